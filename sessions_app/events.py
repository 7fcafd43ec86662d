"""Channel-layer groups and the pushes sent through them.

A push is encoded to its JSON text once, here, and every consumer in the group forwards that text
as it is: one encoding per broadcast, not one per member. Layer messages carry primitives only
(channels_redis serialises them with msgpack: no UUID, datetime or Decimal).

Pushes leave only after the change they announce is committed. Services return the events they
produce; the consumer publishes them when the service's database hop has returned, which is after
its ``transaction.atomic`` block committed. Events that model signals produce (sessions_app.signals:
a membership or a title changed, whoever changed it) go through ``emit``: inside a service run for a
socket request (``collecting``) they join that service's events, published by the consumer as
above; anywhere else (the admin, a shell) they are sent once the transaction commits
(``publish_on_commit``). So the same code builds them whoever makes the change.

Audiences: a session's group (its joined connections, ``push``); a user's open connections, joined
to anything or nothing (``user_push``: one message to every process, whose account listener hands
it to its connections of those users, sessions_app.process); one connection (``socket_close``, sent
to its channel name, Channels' ``channel_layer.send``).
"""

import contextlib
import logging
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from . import metrics, oplog, protocol

logger = logging.getLogger(__name__)

# Layer message types: session pushes go to the consumers (an explicit dispatch table), account
# events to each process's account listener (sessions_app.process), which hands user pushes on to
# its connections of those users; a socket close goes to one connection's channel.
SESSION_PUSH = "session.push"
USER_PUSH = "user.push"
USER_DISCONNECT = "user.disconnect"
SOCKET_CLOSE = "socket.close"

# What a user push asks of a connection joined to the session it is about (``user_push``).
LEAVE = "leave"  # the user is no longer a member, or the session is gone: leave it
ROLE = "role"  # the user's role changed: apply it

# One member per server process: its account listener's channel (sessions_app.process).
ACCOUNTS_GROUP = "accounts"


def session_group(session_id: Any) -> str:
    """The group of every connection joined to a session: ``session.<32 hex digits>``.

    Channels group names: ASCII letters, digits, ``-_.``, fewer than 100 characters.
    """
    hex_id = session_id.hex if hasattr(session_id, "hex") else str(session_id).replace("-", "")
    return f"session.{hex_id}"


@dataclass(frozen=True, slots=True)
class Event:
    """One layer message for one group, or for one channel when ``channel`` is set. ``message``
    holds primitives only."""

    group: str
    message: dict[str, Any]
    channel: str = ""


@dataclass(slots=True)
class Outcome:
    """A service's result: the reply ``data`` for the client and the events to publish after commit."""

    data: dict[str, Any]
    pushes: list[Event] = field(default_factory=list)
    session_id: UUID | None = None
    role: str | None = None
    version: int = 0


def push(session_id: Any, state: str, data: dict[str, Any], *, exclude: str = "", version: int = 0) -> Event:
    """A push ``{state, data}`` to a session's group, encoded once.

    ``exclude`` is the channel name of the connection that caused it (it gets a reply instead);
    ``version`` is the session version the push brings a member to, so that a connection can drop
    a push it already has from its join snapshot (0: always deliver).
    """
    return group_push(session_group(session_id), state, data, exclude=exclude, version=version)


def group_push(group: str, state: str, data: dict[str, Any], *, exclude: str = "", version: int = 0) -> Event:
    """A push ``{state, data}`` to any group connections subscribed to (``subscribe_group``).

    The message, of type ``session.push``: ``{"type", "group", "text", "exclude", "version"}``,
    ``text`` being the frame's JSON. Raises TypeError if ``data`` cannot be encoded.
    """
    return Event(
        group,
        {
            "type": SESSION_PUSH,
            "group": group,
            "text": protocol.encode({"state": state, "data": data}),
            "exclude": exclude,
            "version": version,
        },
    )


def user_push(
    user_ids: Iterable[int],
    state: str,
    data: dict[str, Any],
    *,
    exclude: str = "",
    session: str = "",
    action: str = "",
    role: str = "",
) -> Event:
    """A push ``{state, data}`` to every open connection of ``user_ids``, on every process.

    The message, of type ``user.push``: ``{"type", "user_ids", "text", "exclude", "session",
    "action", "role"}``. ``session`` (a UUID string) names the session it is about; a connection
    joined to it first does ``action``: ``LEAVE`` (leave the session) or ``ROLE`` (take ``role``).
    """
    text = protocol.encode({"state": state, "data": data})
    message = {"type": USER_PUSH, "user_ids": list(user_ids), "text": text, "exclude": exclude}
    return Event(ACCOUNTS_GROUP, {**message, "session": session, "action": action, "role": role})


def user_disconnect(user_id: int, reason: str) -> Event:
    """Tells every process to end the sockets of ``user_id`` (``reason``: protocol.END_REASONS)."""
    return Event(ACCOUNTS_GROUP, {"type": USER_DISCONNECT, "user_id": user_id, "reason": reason})


def socket_close(channel_name: str, reason: str) -> Event:
    """Ends one connection, on whichever process holds it (``channel_layer.send`` to its channel)."""
    return Event("", {"type": SOCKET_CLOSE, "reason": reason}, channel=channel_name)


# --- who makes a change, and where its events go -------------------------------------------------


@dataclass(slots=True)
class _Collecting:
    by: dict[str, Any] | None
    exclude: str
    pushes: list[Event] = field(default_factory=list)


_collecting: ContextVar[_Collecting | None] = ContextVar("sessions_app_collecting", default=None)


@contextlib.contextmanager
def collecting(*, by: dict[str, Any], exclude: str = "") -> Iterator[list[Event]]:
    """Within: the change is made by ``by`` (``{"id", "username"}``) through the connection
    ``exclude``, and the events ``emit`` is given are added to the yielded list (for the service
    to return and the consumer to publish after commit) instead of being sent on commit."""
    token = _collecting.set(_Collecting(by, exclude))
    try:
        yield _collecting.get().pushes  # type: ignore[union-attr]
    finally:
        _collecting.reset(token)


def made_by() -> tuple[dict[str, Any] | None, str]:
    """``(by, exclude)`` of the change being made: the user and connection of the socket request
    (``collecting``), or ``(None, "")`` for any other (an operator in the admin, a shell)."""
    current = _collecting.get()
    return (current.by, current.exclude) if current is not None else (None, "")


def emit(events: list[Event]) -> None:
    """Send ``events`` after the current change commits: with the service's own events inside
    ``collecting``, else with ``publish_on_commit``."""
    if not events:
        return
    current = _collecting.get()
    if current is not None:
        current.pushes.extend(events)
    else:
        publish_on_commit(events)


async def apublish(events: list[Event]) -> bool:
    """Send ``events`` through the channel layer from async code.

    A failed send (Redis unreachable) is logged and does not raise: the change it announces is
    already committed, and members that miss it catch up by version (docs/protocol.md, "Pushes").
    Returns False when any send failed.
    """
    if not events:
        return True
    layer = get_channel_layer()
    ok = True
    for event in events:
        try:
            if event.channel:
                await layer.send(event.channel, event.message)
            else:
                await layer.group_send(event.group, event.message)
        except Exception:  # noqa: BLE001 - logged with its traceback by sessions_app.oplog
            # Broad on purpose: channels_redis raises redis-py's, OSError and asyncio errors alike.
            # One line per outage, then a count (sessions_app.oplog), not a traceback per publish.
            oplog.LAYER.failed(f"publish {event.message['type']}")
            metrics.layer_error(metrics.PUBLISH)
            ok = False
        else:
            oplog.LAYER.ok()
    return ok


def publish_on_commit(events: list[Event]) -> None:
    """From synchronous code: send ``events`` once the current transaction commits (at once if none)."""
    transaction.on_commit(lambda: async_to_sync(apublish)(events))
