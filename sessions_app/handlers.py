"""The protocol's states (docs/protocol.md, section 4), registered by name.

Each handler gets the consumer and its validated ``data`` and returns the reply ``data``; expected
failures raise ProtocolError. Database work goes through ``call`` (one hop per operation).
"""

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from django.db import InterfaceError, OperationalError

from . import auth, documents, events, executors, metrics, oplog, protocol, rebasing, replies, selectors, services
from .models import Role
from .presence import user_check
from .protocol import ProtocolError
from .registry import Connection, message, state
from .serializers import (
    CreateSchema,
    JoinSchema,
    PatchSchema,
    SaveSchema,
    TokenSchema,
)
from .work import Work, limit_for

logger = logging.getLogger(__name__)

_async_services: dict[Callable[..., Any], Callable[..., Any]] = {}

# A fair share of the database thread. Every connection's database work runs in one thread per
# process (Channels' database_sync_to_async), in the order it was asked for, so one user with 20
# sockets sending costly requests (a 1 MB document is ~40 ms to read and ~115 ms to write per
# patch on PostgreSQL) queued ahead of everyone else: other users' requests and /healthz waited
# seconds (found by an attacker's trial). One user's hops here wait for each other, in order, so
# the thread's queue holds at most one hop per user and anyone else waits behind at most one hop
# of each busy user. {user id: [lock, callers holding or waiting for it]}.
_user_turns: dict[Any, list[Any]] = {}


async def call(service: Callable[..., Any], *, turn: Any = None, **kwargs: Any) -> Any:
    """Run a synchronous service or selector in Channels' database thread; returns its result.

    ``database_sync_to_async`` closes unusable and expired database connections before and after
    the call, so a connection dropped between messages is replaced. A database that cannot be
    reached raises ProtocolError(UNAVAILABLE) (close 4503; the client reconnects with backoff).
    Calls for one user (``turn=<user id>``, else ``user={"id", ...}`` or ``user_id=``) run one at a
    time, in order: see ``_user_turns``. A connection's open and close take the same turns, so a
    user's quick reconnects cannot open connections ahead of the closes of the previous ones.
    """
    user = kwargs.get("user")
    user_id = turn if turn is not None else user.get("id") if isinstance(user, dict) else kwargs.get("user_id")
    if user_id is None:
        return await _hop(service, kwargs)
    turn = _user_turns.get(user_id)
    if turn is None:
        turn = _user_turns[user_id] = [asyncio.Lock(), 0]
    turn[1] += 1
    try:
        async with turn[0]:
            return await _hop(service, kwargs)
    finally:
        turn[1] -= 1
        if not turn[1]:
            del _user_turns[user_id]


async def _hop(service: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    wrapped = _async_services.get(service)
    if wrapped is None:
        wrapped = _async_services[service] = database_sync_to_async(service)
    try:
        result = await wrapped(**kwargs)
    except (OperationalError, InterfaceError):
        oplog.DATABASE.failed(service.__name__)  # one line per outage, then a count
        metrics.database_error(service.__name__)
        raise ProtocolError(protocol.UNAVAILABLE, "The database is unreachable; reconnect later.") from None
    oplog.DATABASE.ok()
    return result


# --- built-in states -----------------------------------------------------------------------------


@state("ping", reply=replies.PingReply)
async def ping(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Liveness and latency probe: ``{}`` -> ``{"server_time": ISO 8601 UTC}``. Extra data is ignored."""
    return {"server_time": protocol.utc_iso(datetime.datetime.now(datetime.UTC))}


@state("authenticate", schema=TokenSchema, reply=replies.TokenExpiryReply)
async def authenticate(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Renew the connection's access token: ``{"token"}`` -> ``{"token_expires_at"}``.

    The token must be a valid access token of the same user, else NOT_AUTHENTICATED (close 4401).
    """
    token = auth.validate_access_token(data["token"])
    if str(auth.token_user_id(token)) != str(conn.user["id"]):
        raise ProtocolError(protocol.NOT_AUTHENTICATED, "The token belongs to another user.")
    await call(user_check, token=token)
    expires_at = conn.schedule_token_expiry(token)
    return {"token_expires_at": protocol.utc_iso(expires_at)}


# --- session states ------------------------------------------------------------------------------


@state("create", schema=CreateSchema, reply=replies.SnapshotSerializer)
async def create(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Create a session owned by the caller and join it; returns the snapshot."""
    outcome = await call(
        services.session_create, user=conn.user, channel_name=conn.channel_name, title=data["title"], data=data["data"]
    )
    await conn.enter_session(outcome)
    return outcome.data


@state("list", reply=replies.ListReply)
async def list_sessions(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """The sessions the caller may open: ``{"sessions": [{"id", "title", "role", "version", "updated_at"}]}``."""
    return {"sessions": await call(selectors.session_list_for_user, user_id=conn.user["id"])}


@state("join", schema=JoinSchema, reply=(replies.SnapshotSerializer, replies.CatchUpSerializer))
async def join(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Join a session (leaving any other); returns the snapshot or the changes after ``since``.

    The connection subscribes to the session's group before reading it, so no push between the
    read and the subscription is missed; pushes the snapshot already holds are dropped by version.
    """
    await conn.subscribe(data["session"])
    try:
        outcome = await call(
            services.session_join,
            user=conn.user,
            channel_name=conn.channel_name,
            session_id=data["session"],
            since=data["since"],
        )
    except ProtocolError:
        await conn.unsubscribe_unless_joined(data["session"])
        raise
    await conn.enter_session(outcome)
    return outcome.data


@state("patch", schema=PatchSchema, needs_session=True, reply=replies.PatchReply)
async def patch(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Apply an RFC 6902 patch made on ``version``: ``{"version", "ops"}`` -> ``{"version": new}``,
    with ``"rebased": true`` and the ``ops`` as applied when it was made on an older version and
    rebased on the changes since (sessions_app/rebasing.py; docs/protocol.md, section 7, "Rebase").

    A patch on a version too far behind one this connection has already seen (in its snapshot, a
    reply or a push: more than ``SESSIONS_REBASE_MAX_CHANGES``) cannot be rebased: it is answered
    ``conflict`` at once, without a database hop.

    A patch on a small document is applied in the database hop; one on a large document (or one
    that does more work than the database thread may spend) is applied in a patch worker between
    a read and a short conditional write (sessions_app/executors.py). When another patch was
    stored between them, the patch is rebased on it (a second try) rather than refused.
    """
    if conn.role != Role.VIEWER and data["version"] < conn.session_version:
        if rebasing.too_old(data["version"], conn.session_version):
            raise rebasing.conflict(conn.session_version)
    for attempt in range(2):
        try:
            outcome = await call(
                services.session_patch,
                user=conn.user,
                channel_name=conn.channel_name,
                session_id=conn.session_id,
                version=data["version"],
                ops=data["ops"],
                editor=conn.role != Role.VIEWER,
                inline_work=executors.INLINE_WORK,
                key=data["key"],
            )
        except services.NeedsWorker as handed_on:
            try:
                outcome = await _patch_in_worker(conn, handed_on.base, handed_on.ops)
            except ProtocolError as exc:
                if exc.code != protocol.CONFLICT or attempt:
                    raise
                continue  # a patch was stored between the read and the write: rebase on it
        break
    if not outcome.data.get("rebased") and not outcome.data.get("duplicate"):
        # A rebased patch's author may not have the versions between its base and this one yet:
        # their pushes, which may come after this reply, must not be dropped as seen.
        conn.session_version = outcome.version
    await conn.publish(outcome.pushes)
    return outcome.data


async def _patch_in_worker(conn: Connection, base: services.PatchBase, ops: list[Any]) -> services.Outcome:
    """Apply ``ops`` to ``base`` in a patch worker, then store the result (a second database hop,
    conditional on the version and role ``base`` was read at, so nothing that changed meanwhile is
    lost: a concurrent patch makes this one a CONFLICT, which the caller tries once more)."""
    with rebasing.applies_or_conflicts(base.rebased, base.version):
        text = await executors.in_patch_worker(
            documents.apply_patch_text, base.text, ops, work=Work(limit_for(base.size))
        )
    return await call(
        services.session_patch_write, user=conn.user, channel_name=conn.channel_name, base=base, ops=ops, text=text
    )


@state("presence", needs_session=True, reply=replies.PresentReply)
async def presence(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Users present in the joined session: ``{"present": [{"id", "username"}]}``."""
    return {"present": await call(selectors.presence_for_session, session_id=conn.session_id)}


async def in_session(conn: Connection, service: Any, **fields: Any) -> dict[str, Any]:
    """Run ``service`` (a services function taking ``user``, ``session_id`` and ``channel_name``
    besides ``fields``) for the joined session in one database hop, publish its pushes, and return
    its reply data; raises the service's ProtocolError."""
    outcome = await call(service, user=conn.user, session_id=conn.session_id, channel_name=conn.channel_name, **fields)
    await conn.publish(outcome.pushes)
    return outcome.data


@state("save", schema=SaveSchema, reply=(replies.SaveReply, replies.EMPTY))
async def save(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Record a revision, reply ``{"revision", "version"}`` (``{}`` with no session), then close 1000."""
    if conn.session_id is None:
        conn.close_after_reply = protocol.CLOSE_NORMAL
        return {}
    reply = await in_session(conn, services.revision_create, message=data["message"])
    conn.close_after_reply = protocol.CLOSE_NORMAL
    return reply


# --- pushes to the user ------------------------------------------------------------------------------


@message(events.USER_PUSH)
async def user_push(conn: Connection, event: dict[str, Any]) -> None:
    """Called for a ``user.push`` to this connection's user (events.user_push, handed over by
    sessions_app.process): forwarded as it is, unless this connection caused it (``exclude``).

    One about the joined session acts first: ``leave`` (``session_removed``) sends the push, leaves
    the session's group (none of its pushes follow) and tells its other members (``presence``);
    ``role`` (``role_changed``) makes the new role the one later patches are checked with.
    """
    if event["exclude"] == conn.channel_name or conn.user is None or conn.user["id"] not in event["user_ids"]:
        # Not for this connection: also a consumer that an app's state put into the reserved
        # ``accounts`` group (events.ACCOUNTS_GROUP) receives every user's pushes there.
        return
    joined = conn.session_id is not None and event["session"] == str(conn.session_id)
    if joined and event["action"] == events.LEAVE:
        metrics.push_sent()
        conn.write(event["text"])
        await conn.leave_session([])
        try:
            outcome = await call(services.session_leave, user=conn.user, channel_name=conn.channel_name)
        except ProtocolError:
            logger.warning("%s left its session; its presence is removed when it closes", conn.channel_name)
            return
        await conn.publish(outcome.pushes)
        return
    if joined and event["action"] == events.ROLE:
        conn.role = event["role"]
    metrics.push_sent()
    conn.write(event["text"])
