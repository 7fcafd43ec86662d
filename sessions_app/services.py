"""Writes. Synchronous ORM code, one transaction each; the consumer calls these through
``database_sync_to_async`` (one hop per operation) and publishes the returned events afterwards.
"""

import functools
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import Token

from . import documents, events, protocol, selectors, tokens
from .conf import app_settings
from .models import Change, Connection, Membership, Revision, Role, ServerProcess, Session
from .protocol import ProtocolError

logger = logging.getLogger(__name__)

# This process's identity in the ServerProcess table (see models.ServerProcess).
SERVER_ID = f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass(slots=True)
class Outcome:
    """A service's result: the reply ``data`` for the client and the events to publish after commit."""

    data: dict[str, Any]
    pushes: list[events.Event] = field(default_factory=list)
    session_id: UUID | None = None
    role: str | None = None
    version: int = 0


# --- connections and presence -------------------------------------------------------------------


def server_heartbeat() -> list[events.Event]:
    """Refresh this process's heartbeat; remove processes whose heartbeat is older than the TTL.

    Returns the presence pushes for sessions that lost members with a dead process.
    """
    now = timezone.now()
    ServerProcess.objects.update_or_create(pk=SERVER_ID, defaults={"heartbeat_at": now})
    cutoff = now - timedelta(seconds=app_settings.PRESENCE_TTL)
    dead = list(ServerProcess.objects.filter(heartbeat_at__lt=cutoff).values_list("pk", flat=True))
    if not dead:
        return []
    with transaction.atomic():
        gone = list(
            Connection.objects.filter(server_id__in=dead, session__isnull=False)
            .values_list("session_id", "user_id", "user__username")
            .distinct()
        )
        ServerProcess.objects.filter(pk__in=dead).delete()  # cascades to their connections
    logger.info("removed %d dead server process(es) and their connections", len(dead))
    pushes = []
    for session_id, user_id, username in gone:
        if not selectors.live_connections().filter(session_id=session_id, user_id=user_id).exists():
            left = {"id": user_id, "username": username}
            pushes.append(_presence_push(session_id, left=left))
    return pushes


def user_check(*, token: Token) -> dict[str, Any]:
    """The token's user as ``{"id", "username"}``, through SimpleJWT's ``JWTAuthentication.get_user``
    (``tokens.JWTAuthentication``, the REST API's too).

    Raises ProtocolError(NOT_AUTHENTICATED) for an unknown or inactive user, or a token made before
    the user's password changed (``CHECK_REVOKE_TOKEN``; sessions_app/tokens.py).
    """
    try:
        user = tokens.JWTAuthentication().get_user(token)
    except (InvalidToken, AuthenticationFailed):
        raise ProtocolError(protocol.NOT_AUTHENTICATED, "The token's user is unknown or inactive.") from None
    return selectors.user_summary(user)


def connection_open(*, token: Token, channel_name: str) -> dict[str, Any]:
    """Find the token's user and register the connection; returns ``{"id", "username"}``.

    The user lookup is ``user_check`` (unknown and inactive users, and tokens made before a password
    change, fail). Raises ProtocolError(NOT_AUTHENTICATED), or ProtocolError(TOO_MANY_CONNECTIONS)
    when the user already has ``SESSIONS_MAX_CONNECTIONS_PER_USER`` live connections (checked in the same
    statement as the insert; simultaneous connects on several processes can still pass the limit
    by their number under PostgreSQL's READ COMMITTED).
    """
    user = user_check(token=token)
    limit = app_settings.MAX_CONNECTIONS_PER_USER
    try:
        inserted = _connection_insert(channel_name=channel_name, user_id=user["id"], limit=limit)
    except IntegrityError:
        # This process's row is missing: first connection, or another process took it for dead
        # after a long stall. Register again and retry once.
        ServerProcess.objects.update_or_create(pk=SERVER_ID, defaults={"heartbeat_at": timezone.now()})
        inserted = _connection_insert(channel_name=channel_name, user_id=user["id"], limit=limit)
    if not inserted:
        raise ProtocolError(
            protocol.TOO_MANY_CONNECTIONS, f"You already have {limit} open connections.", data={"limit": limit}
        )
    return user


# Connection rows are written at every connect and close, so these two are single SQL statements:
# through the ORM, the count, insert and delete cost ~0.8 ms of Python per connection against
# ~0.16 ms here (SQLite, one core; the connect workload of bench/ is bound by it). Portable SQL
# (SQLite and PostgreSQL), in autocommit mode, with Django's quoting and datetime adaptation.


@functools.cache
def _connection_sql(vendor: str) -> tuple[str, str]:
    """The insert-if-under-limit and delete statements for ``vendor``'s quoting, built once."""
    quote = connection.ops.quote_name
    table, processes = quote(Connection._meta.db_table), quote(ServerProcess._meta.db_table)
    insert = (
        f"INSERT INTO {table} (channel_name, server_id, user_id, session_id, opened_at) "  # noqa: S608 - table names
        "SELECT %s, %s, %s, NULL, %s "
        "WHERE (SELECT COUNT(*) FROM ("
        f"SELECT 1 FROM {table} c INNER JOIN {processes} p ON c.server_id = p.id "
        "WHERE c.user_id = %s AND p.heartbeat_at >= %s LIMIT %s) live) < %s"
    )
    delete = f"DELETE FROM {table} WHERE channel_name = %s"  # noqa: S608 - a quoted table name
    return insert, delete


def _connection_insert(*, channel_name: str, user_id: int, limit: int) -> bool:
    """Insert the connection row unless the user has ``limit`` live connections; True if inserted.

    Counts at most ``limit`` rows (O(limit) however large the table). Raises IntegrityError when
    this process's ServerProcess row is missing (foreign key).
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=app_settings.PRESENCE_TTL)
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            _connection_sql(connection.vendor)[0],
            [channel_name, SERVER_ID, user_id, adapt(now), user_id, adapt(cutoff), limit, limit],
        )
        return cursor.rowcount == 1


def connection_close(*, channel_name: str, user: dict[str, Any], session_id: UUID | None) -> list[events.Event]:
    """Forget a closed connection; returns the presence push if ``user`` (``{"id", "username"}``)
    left ``session_id``, the session the connection had joined (None: none), with its last tab.

    The consumer knows its session (it changes only with the row, in the same hop), so a
    connection that joined nothing costs one DELETE. Nothing is pushed when the row was already
    gone (the heartbeat of another process removed this one as dead, and told the session then).
    """
    with connection.cursor() as cursor:
        cursor.execute(_connection_sql(connection.vendor)[1], [channel_name])
        deleted = cursor.rowcount
    if not deleted or session_id is None:
        return []
    return _left_events((session_id, user["id"], user["username"]), channel_name)


def _left_events(row: tuple[Any, int, str] | None, channel_name: str) -> list[events.Event]:
    """The presence push for ``(session_id, user_id, username)`` when that was the user's last tab."""
    if row is None or row[0] is None:
        return []
    session_id, user_id, username = row
    if selectors.user_present_elsewhere(session_id=session_id, user_id=user_id, channel_name=channel_name):
        return []
    return [_presence_push(session_id, left={"id": user_id, "username": username}, exclude=channel_name)]


def _presence_push(session_id: UUID, *, exclude: str = "", **change: dict[str, Any]) -> events.Event:
    data = {"session": str(session_id), "present": selectors.presence_for_session(session_id=session_id), **change}
    return events.push(session_id, "presence", data, exclude=exclude)


def _connection_move(*, channel_name: str, user: dict[str, Any], session_id: UUID | None) -> list[events.Event]:
    """Point the connection at ``session_id`` (None: no session); returns the presence pushes."""
    previous = Connection.objects.filter(pk=channel_name).values_list("session_id", flat=True).first()
    if previous == session_id:
        return []
    Connection.objects.filter(pk=channel_name).update(session_id=session_id)
    pushes = []
    if previous is not None:
        pushes += _left_events((previous, user["id"], user["username"]), channel_name)
    if session_id is not None and not selectors.user_present_elsewhere(
        session_id=session_id, user_id=user["id"], channel_name=channel_name
    ):
        pushes.append(_presence_push(session_id, joined=user, exclude=channel_name))
    return pushes


# --- sessions ------------------------------------------------------------------------------------


@transaction.atomic
def session_create(*, user: dict[str, Any], channel_name: str, title: str, data: dict[str, Any]) -> Outcome:
    """Create a session owned by ``user`` and join the connection to it; returns the snapshot.

    Raises ProtocolError(INVALID_DATA) for a document over ``SESSIONS_MAX_DOCUMENT_BYTES`` or one
    holding U+0000, and ProtocolError(PERMISSION_DENIED) past ``SESSIONS_MAX_SESSIONS_PER_USER``.
    """
    documents.check_document(data)
    limit = app_settings.MAX_SESSIONS_PER_USER
    if Session.objects.filter(owner_id=user["id"]).count() >= limit:
        raise ProtocolError(
            protocol.PERMISSION_DENIED, f"You already own {limit} sessions, the most allowed.", data={"limit": limit}
        )
    session = Session.objects.create(title=title, owner_id=user["id"], data=data)
    Membership.objects.create(session=session, user_id=user["id"], role=Role.OWNER)
    pushes = _connection_move(channel_name=channel_name, user=user, session_id=session.pk)
    snapshot = selectors.session_snapshot(session=session, role=Role.OWNER)
    return Outcome(snapshot, pushes, session.pk, Role.OWNER, session.version)


@transaction.atomic
def session_join(*, user: dict[str, Any], channel_name: str, session_id: UUID, since: int | None) -> Outcome:
    """Join the connection to a session the user is a member of.

    Returns the snapshot, or ``{"id", "version", "changes"}`` when ``since`` is given and every
    change after it is still kept (``since`` above the current version also gets the snapshot).
    Raises ProtocolError(NOT_FOUND).
    """
    membership = selectors.membership_get(session_id=session_id, user_id=user["id"])
    session = membership.session
    pushes = _connection_move(channel_name=channel_name, user=user, session_id=session.pk)
    changes = None
    if since is not None and since <= session.version:
        changes = selectors.changes_since(session_id=session.pk, since=since, version=session.version)
    if changes is not None:
        data = {"id": str(session.pk), "version": session.version, "changes": changes}
    else:
        data = selectors.session_snapshot(session=session, role=membership.role)
    return Outcome(data, pushes, session.pk, membership.role, session.version)


@transaction.atomic
def session_leave(*, user: dict[str, Any], channel_name: str) -> Outcome:
    """Detach the connection from its session; returns the presence push if the user left."""
    return Outcome({}, _connection_move(channel_name=channel_name, user=user, session_id=None))


# The newest version of each session this process has committed or found in the database. Versions
# only grow, so a patch based on an older one cannot succeed: ``session_patch`` answers it at once,
# without the transaction and queries, when it runs (in the one database thread, so behind every
# patch queued before it). Under load, members of a busy session retry on versions that went stale
# while they waited; without this each retry cost as much as an accepted patch, and the retries
# made the queue, and so the conflicts, grow. Bounded: cleared past _VERSIONS_SEEN_MAX sessions.
_versions_seen: dict[UUID, int] = {}
_VERSIONS_SEEN_MAX = 10_000


def _saw_version(session_id: UUID, version: int | None) -> None:
    if version is not None and version > _versions_seen.get(session_id, 0):
        if len(_versions_seen) >= _VERSIONS_SEEN_MAX:
            _versions_seen.clear()
        _versions_seen[session_id] = version


def session_patch(
    *, user: dict[str, Any], channel_name: str, session_id: UUID, version: int, ops: list[Any], editor: bool = False
) -> Outcome:
    """Apply an RFC 6902 patch (the jsonpatch library) at ``version``; returns ``{"version": new}``.

    The document, the version bump and the change-log row commit together. The update is
    conditional on the version (``UPDATE ... WHERE version = n``), so concurrent patches from
    several processes never lose an update: the loser gets ProtocolError(CONFLICT) with the
    current version in ``data``. Also raises NOT_FOUND, PERMISSION_DENIED (viewer) and
    INVALID_DATA (an operation that cannot be applied, a failed ``test``, a result that is not an
    object or is too large). Trims the change log to ``SESSIONS_CHANGE_LOG_KEEP`` entries.

    ``editor``: the caller knows the user may edit (a viewer must get PERMISSION_DENIED, not
    CONFLICT), so a patch on a version older than one this process has seen conflicts at once.
    """
    seen = _versions_seen.get(session_id, 0)
    if editor and version < seen:
        raise ProtocolError(
            protocol.CONFLICT, "The session has changed; rebase on the current version.", data={"version": seen}
        )
    try:
        outcome = _session_patch(user=user, channel_name=channel_name, session_id=session_id, version=version, ops=ops)
    except ProtocolError as exc:
        if exc.code == protocol.CONFLICT and exc.data:
            _saw_version(session_id, exc.data.get("version"))
        raise
    _saw_version(session_id, outcome.version)
    return outcome


@transaction.atomic
def _session_patch(
    *, user: dict[str, Any], channel_name: str, session_id: UUID, version: int, ops: list[Any]
) -> Outcome:
    membership = selectors.membership_get(session_id=session_id, user_id=user["id"])
    if membership.role == Role.VIEWER:
        raise ProtocolError(protocol.PERMISSION_DENIED, "Viewers cannot change the session.")
    session = membership.session
    if session.version != version:
        raise ProtocolError(
            protocol.CONFLICT,
            "The session has changed; rebase on the current version.",
            data={"version": session.version},
        )
    document = documents.apply_patch(session.data, ops)  # session.data is this call's own copy
    new_version = version + 1
    now = timezone.now()
    updated = Session.objects.filter(pk=session_id, version=version).update(
        data=document, version=new_version, updated_at=now
    )
    if not updated:
        current = Session.objects.filter(pk=session_id).values_list("version", flat=True).first()
        raise ProtocolError(
            protocol.CONFLICT, "The session has changed; rebase on the current version.", data={"version": current}
        )
    Change.objects.create(session_id=session_id, version=new_version, ops=ops, author_id=user["id"], created_at=now)
    keep = app_settings.CHANGE_LOG_KEEP
    if new_version > keep:
        Change.objects.filter(session_id=session_id, version__lte=new_version - keep).delete()
    pushed = {"session": str(session_id), "version": new_version, "ops": ops, "by": _by(user)}
    push = events.push(session_id, "patched", pushed, exclude=channel_name, version=new_version)
    return Outcome({"version": new_version}, [push], session_id, membership.role, new_version)


def _by(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "username": user["username"]}


@transaction.atomic
def member_invite(*, user: dict[str, Any], session_id: UUID, username: str, role: str) -> Outcome:
    """Add ``username`` to the session as ``role`` (editor or viewer), or change their role.

    Owner only. Returns ``{"members": [...]}``. Raises NOT_FOUND (session or user),
    PERMISSION_DENIED (not the owner), INVALID_DATA (the owner's own role cannot change).
    """
    membership = selectors.membership_get(session_id=session_id, user_id=user["id"])
    if membership.role != Role.OWNER:
        raise ProtocolError(protocol.PERMISSION_DENIED, "Only the owner can invite.")
    invitee = get_user_model().objects.filter(username=username, is_active=True).first()
    if invitee is None:
        raise ProtocolError(protocol.NOT_FOUND, f"No user named {username!r}.")
    if invitee.pk == membership.session.owner_id:
        raise ProtocolError(protocol.INVALID_DATA, "The owner's role cannot change.")
    Membership.objects.update_or_create(session_id=session_id, user=invitee, defaults={"role": role})
    return Outcome({"members": selectors.members_of(session_id=session_id)})


@transaction.atomic
def revision_create(*, user: dict[str, Any], channel_name: str, session_id: UUID, message: str) -> Outcome:
    """Record a revision (a snapshot of ``data`` at the current version); returns ``{"revision", "version"}``.

    Owner or editor. Revisions are numbered from 1 per session; the session row is locked while
    numbering (PostgreSQL), so concurrent saves get distinct numbers. Raises NOT_FOUND, PERMISSION_DENIED.
    """
    membership = selectors.membership_get(session_id=session_id, user_id=user["id"], for_update=True)
    if membership.role == Role.VIEWER:
        raise ProtocolError(protocol.PERMISSION_DENIED, "Viewers cannot save the session.")
    session = membership.session
    last = Revision.objects.filter(session_id=session_id).order_by("-number").values_list("number", flat=True).first()
    number = (last or 0) + 1
    Revision.objects.create(
        session_id=session_id,
        number=number,
        version=session.version,
        data=session.data,
        message=message,
        author_id=user["id"],
    )
    data = {"revision": number, "version": session.version}
    pushed = {"session": str(session_id), **data, "by": _by(user)}
    return Outcome(data, [events.push(session_id, "saved", pushed, exclude=channel_name)], session_id, membership.role)
