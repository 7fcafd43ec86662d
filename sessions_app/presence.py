"""Connections and presence: the rows that say who is connected where, written at every connect,
join, leave and close, and this process's heartbeat. Synchronous ORM code, called through
``database_sync_to_async`` (one hop per operation); presence pushes are returned, not sent.
"""

import functools
import logging
import os
import socket
import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import Token

from . import events, protocol, selectors, userlookup
from .conf import app_settings
from .models import Connection, ServerProcess
from .protocol import ProtocolError

logger = logging.getLogger(__name__)

# This process's identity in the ServerProcess table (see models.ServerProcess).
SERVER_ID = f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


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
            pushes.append(presence_push(session_id, left=left))
    return pushes


def user_check(*, token: Token) -> dict[str, Any]:
    """The token's user as ``{"id", "username"}``, with SimpleJWT's ``JWTAuthentication.get_user``
    rules (``tokens.JWTAuthentication``, the REST API's too) in one prepared SELECT
    (sessions_app.userlookup).

    Raises ProtocolError(NOT_AUTHENTICATED) for an unknown or inactive user, or a token made before
    the user's password changed (``CHECK_REVOKE_TOKEN``; sessions_app/tokens.py).
    """
    try:
        return userlookup.user_summary(token)
    except (InvalidToken, AuthenticationFailed):
        raise ProtocolError(protocol.NOT_AUTHENTICATED, "The token's user is unknown or inactive.") from None


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
    return [presence_push(session_id, left={"id": user_id, "username": username}, exclude=channel_name)]


def presence_push(session_id: UUID, *, exclude: str = "", **change: dict[str, Any]) -> events.Event:
    """The ``presence`` push for ``session_id``: ``{"session", "present": [...], **change}`` where
    ``change`` is ``joined=`` or ``left=`` a ``{"id", "username"}``; not sent to ``exclude``."""
    data = {"session": str(session_id), "present": selectors.presence_for_session(session_id=session_id), **change}
    return events.push(session_id, "presence", data, exclude=exclude)


def connection_move(*, channel_name: str, user: dict[str, Any], session_id: UUID | None) -> list[events.Event]:
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
        pushes.append(presence_push(session_id, joined=user, exclude=channel_name))
    return pushes
