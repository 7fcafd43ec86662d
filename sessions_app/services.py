"""Writes. Synchronous ORM code, one transaction each; the consumer calls these through
``database_sync_to_async`` (one hop per operation) and publishes the returned events afterwards.

Writes of memberships and titles run inside ``events.collecting``: the pushes the model signals
build for them (sessions_app.membership, the same for the admin) come back in ``Outcome.pushes``.
"""

import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from . import documents, events, presence, protocol, selectors
from .conf import app_settings
from .models import Change, Membership, Revision, Role, Session
from .protocol import ProtocolError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """A service's result: the reply ``data`` for the client and the events to publish after commit."""

    data: dict[str, Any]
    pushes: list[events.Event] = field(default_factory=list)
    session_id: UUID | None = None
    role: str | None = None
    version: int = 0


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
    with events.collecting(by=_by(user), exclude=channel_name) as pushes:  # the owner's other tabs
        session = Session.objects.create(title=title, owner_id=user["id"], data=data)
        Membership.objects.create(session=session, user_id=user["id"], role=Role.OWNER)
    pushes += presence.connection_move(channel_name=channel_name, user=user, session_id=session.pk)
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
    pushes = presence.connection_move(channel_name=channel_name, user=user, session_id=session.pk)
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
    return Outcome({}, presence.connection_move(channel_name=channel_name, user=user, session_id=None))


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


def _owned(*, user: dict[str, Any], session_id: UUID, action: str) -> Session:
    """The session, if ``user`` is its owner; raises NOT_FOUND, PERMISSION_DENIED ("Only the owner
    can ``action``.")."""
    membership = selectors.membership_get(session_id=session_id, user_id=user["id"])
    if membership.role != Role.OWNER:
        raise ProtocolError(protocol.PERMISSION_DENIED, f"Only the owner can {action}.")
    return membership.session


@transaction.atomic
def member_invite(
    *, user: dict[str, Any], session_id: UUID, username: str, role: str, channel_name: str = ""
) -> Outcome:
    """Add ``username`` to the session as ``role`` (editor or viewer), or change their role.

    Owner only. Returns ``{"members": [...]}``, with ``session_added`` or ``role_changed`` for the
    invitee and ``members`` for the session's other connections (not ``channel_name``). Raises
    NOT_FOUND (session or user), PERMISSION_DENIED (not the owner), INVALID_DATA (the owner's own
    role cannot change).
    """
    session = _owned(user=user, session_id=session_id, action="invite")
    invitee = get_user_model().objects.filter(username=username, is_active=True).first()
    if invitee is None:
        raise ProtocolError(protocol.NOT_FOUND, f"No user named {username!r}.")
    if invitee.pk == session.owner_id:
        raise ProtocolError(protocol.INVALID_DATA, "The owner's role cannot change.")
    with events.collecting(by=_by(user), exclude=channel_name) as pushes:
        Membership.objects.update_or_create(session_id=session_id, user=invitee, defaults={"role": role})
    return Outcome({"members": selectors.members_of(session_id=session_id)}, pushes)


@transaction.atomic
def member_remove(*, user: dict[str, Any], session_id: UUID, username: str, channel_name: str = "") -> Outcome:
    """Remove ``username``'s membership; returns ``{"members": [...]}``.

    Owner only. The removed user's connections get ``session_removed`` (one joined to the session
    leaves it) and the session's other connections ``members``. Raises NOT_FOUND (the session, or
    no such member), PERMISSION_DENIED (not the owner), INVALID_DATA (the owner cannot be removed).
    """
    session = _owned(user=user, session_id=session_id, action="remove members")
    member = Membership.objects.filter(session_id=session_id, user__username=username).first()
    if member is None:
        raise ProtocolError(protocol.NOT_FOUND, f"{username!r} is not a member of this session.")
    if member.user_id == session.owner_id:
        raise ProtocolError(protocol.INVALID_DATA, "The owner cannot be removed.")
    with events.collecting(by=_by(user), exclude=channel_name) as pushes:
        member.delete()
    return Outcome({"members": selectors.members_of(session_id=session_id)}, pushes)


@transaction.atomic
def session_rename(*, user: dict[str, Any], session_id: UUID, title: str, channel_name: str = "") -> Outcome:
    """Change the session's title; returns ``{"id", "title"}``.

    Owner only. Every member's connections but ``channel_name`` get ``session_renamed``. Raises
    NOT_FOUND, PERMISSION_DENIED (not the owner).
    """
    session = _owned(user=user, session_id=session_id, action="rename the session")
    with events.collecting(by=_by(user), exclude=channel_name) as pushes:
        session.title = title
        session.save(update_fields=["title"])
    return Outcome({"id": str(session_id), "title": title}, pushes)


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


# --- operators -----------------------------------------------------------------------------------


@transaction.atomic
def user_sign_out(*, user_ids: list[int]) -> int:
    """Sign users out everywhere: blacklist each of their refresh tokens that is still valid (so no
    client of theirs can renew its access token) and, once that commits, end their sockets on
    every process (``not_authenticated``, reason ``disconnected``, 4401). Returns the number of
    refresh tokens revoked. Access tokens already issued still pass until they expire
    (``JWT_ACCESS_LIFETIME``): deactivate the account to refuse them at once.
    """
    outstanding = OutstandingToken.objects.filter(
        user_id__in=user_ids, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    revoked = BlacklistedToken.objects.bulk_create([BlacklistedToken(token=token) for token in outstanding])
    events.emit([events.user_disconnect(user_id, protocol.DISCONNECTED) for user_id in user_ids])
    return len(revoked)
