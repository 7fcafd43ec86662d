"""Channel-layer groups and the pushes sent through them.

A push is encoded to its JSON text once, here, and every consumer in the group forwards that text
as it is: one encoding per broadcast, not one per member. Layer messages carry primitives only
(channels_redis serialises them with msgpack: no UUID, datetime or Decimal).

Pushes leave only after the change they announce is committed. Services return the events they
produce; the consumer publishes them when the service's database hop has returned, which is after
its ``transaction.atomic`` block committed. Code that writes from a synchronous context (the admin,
signals) uses ``publish_on_commit``, which defers the send with ``transaction.on_commit``.
"""

import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from . import protocol

logger = logging.getLogger(__name__)

# Layer message types: session pushes go to the consumers (an explicit dispatch table), account
# events to each process's channel (sessions_app.fanout).
SESSION_PUSH = "session.push"
USER_DEACTIVATED = "user.deactivated"

# One member per server process: its process channel (sessions_app.fanout).
ACCOUNTS_GROUP = "accounts"


def session_group(session_id: Any) -> str:
    """The group of every connection joined to a session: ``session.<32 hex digits>``.

    Channels group names: ASCII letters, digits, ``-_.``, fewer than 100 characters.
    """
    hex_id = session_id.hex if hasattr(session_id, "hex") else str(session_id).replace("-", "")
    return f"session.{hex_id}"


@dataclass(frozen=True, slots=True)
class Event:
    """One layer message for one group. ``message`` holds primitives only."""

    group: str
    message: dict[str, Any]


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


def user_deactivated(user_id: int) -> Event:
    """Tells every process to close the sockets of ``user_id``: deactivated or deleted."""
    return Event(ACCOUNTS_GROUP, {"type": USER_DEACTIVATED, "user_id": user_id})


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
            await layer.group_send(event.group, event.message)
        except Exception:
            # Broad on purpose: channels_redis raises redis-py's, OSError and asyncio errors alike.
            logger.warning("could not publish %s to %s", event.message["type"], event.group, exc_info=True)
            ok = False
    return ok


def publish_on_commit(events: list[Event]) -> None:
    """From synchronous code: send ``events`` once the current transaction commits (at once if none)."""
    transaction.on_commit(lambda: async_to_sync(apublish)(events))
