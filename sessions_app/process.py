"""This server process's own state: its open connections, its heartbeat, deactivated users.

- **Heartbeat.** Every ``SESSIONS_PRESENCE_HEARTBEAT`` seconds the process refreshes its
  ServerProcess row and removes processes whose heartbeat is older than ``SESSIONS_PRESENCE_TTL``
  (killed with SIGKILL, or stalled), with their connections, pushing ``presence`` for the sessions
  their users left. A dead process's users vanish from presence listings within the TTL, and the
  others are told within TTL + one heartbeat.
- **Accounts.** One channel per process, read by its account listener, is in the ``accounts``
  group. Through it come the events addressed to users rather than sessions: ``user.disconnect``
  (a user deactivated, deleted, whose password changed, who signed out, or whom an operator
  disconnected: their sockets here are ended) and ``user.push`` (a push for every open connection
  of some users, e.g. an invite: handed to each such connection here, in order with its other
  messages). One group membership per process instead of one per connection (a ``user.<id>``
  group) keeps the handshake free of channel-layer round trips; the price is that every process
  receives every such event, which are rare (membership and account changes).
  As a backstop for changes no signal reports (``QuerySet.update()``, SQL, another process on
  the in-memory layer), each heartbeat asks the database which of this process's users are no
  longer active: one query per heartbeat, so such a user is disconnected within ``SESSIONS_PRESENCE_HEARTBEAT`` seconds.
- **Group refresh.** channels_redis forgets a group member after ``group_expiry`` (2 hours in
  project.settings): sessions_app.layers re-adds its process channel to its groups in time; on a
  stock layer the account listener adds its channel to ``accounts`` again every ``GROUP_REFRESH``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import time
from collections import defaultdict
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import DatabaseError, connections

from . import drain, events, metrics, oplog, presence, protocol, selectors
from .conf import app_settings
from .models import ServerProcess

logger = logging.getLogger(__name__)

GROUP_REFRESH = 3600.0  # seconds; half the group_expiry of 7200 set in project.settings


class LocalConnection(Protocol):
    """What this module needs of a connection (SessionConsumer)."""

    user: dict[str, Any] | None

    def end(self, reason: str) -> None: ...

    def deliver(self, message: dict[str, Any]) -> None: ...


_connections: dict[int, set[LocalConnection]] = defaultdict(set)
_tasks: dict[str, asyncio.Task[None]] = {}
_exit_hook = False


def register(consumer: LocalConnection) -> None:
    """Called when a connection authenticates."""
    _connections[consumer.user["id"]].add(consumer)
    metrics.connection_opened()


def unregister(consumer: LocalConnection) -> None:
    """Called when an authenticated connection closes."""
    user_id = consumer.user["id"]
    metrics.connection_closed()
    mine = _connections.get(user_id)
    if mine is not None:
        mine.discard(consumer)
        if not mine:
            del _connections[user_id]


def forget_this_process() -> None:
    """At the end of a drain (sessions_app.drain) and at interpreter exit (daphne stopped with
    SIGTERM or Ctrl-C): delete this process's row and, by cascade, its connections, so a restart
    does not count them against the users' connection limit nor show them present until the TTL
    passes. A SIGKILL skips this; the TTL covers it.
    """
    try:
        ServerProcess.objects.filter(pk=presence.SERVER_ID).delete()
    except DatabaseError:
        logger.debug("could not delete this process's row at exit", exc_info=True)
    finally:
        connections.close_all()


def ensure_running() -> None:
    """Start the heartbeat and the account listener on the running loop, unless they run there
    (tests make new loops and layers); install the drain on SIGTERM (sessions_app.drain). Once a
    drain began, nothing is started again (the heartbeat would write this process's row back)."""
    global _exit_hook
    if not _exit_hook:
        atexit.register(forget_this_process)
        _exit_hook = True
    drain.install()
    if drain.draining():
        return
    loop = asyncio.get_running_loop()
    for name, start in (("heartbeat", _heartbeat), ("accounts", _account_listener), ("metrics", metrics.flush_loop)):
        task = _tasks.get(name)
        if task is None or task.done() or task.get_loop() is not loop:
            _tasks[name] = loop.create_task(start(), name=f"sessions-{name}")


def stop_running() -> None:
    """Stop the heartbeat and the account listener (the end of a drain)."""
    for task in _tasks.values():
        task.cancel()
    _tasks.clear()


_HEARTBEAT = oplog.Outage("process heartbeat (database or channel layer)")


async def _heartbeat() -> None:
    beat = database_sync_to_async(presence.server_heartbeat)
    not_active = database_sync_to_async(selectors.users_not_active)
    while True:
        try:
            await events.apublish(await beat())
            if _connections:
                for user_id in await not_active(user_ids=list(_connections)):
                    close_user(user_id, protocol.DEACTIVATED)
            metrics.heartbeat(True)
            _HEARTBEAT.ok()
        except Exception:  # noqa: BLE001 - logged with its traceback by sessions_app.oplog
            # Broad on purpose: the database or Redis may be down (any driver error); the next beat
            # retries. One line per outage, then a count (sessions_app.oplog).
            _HEARTBEAT.failed("heartbeat")
            metrics.heartbeat(False)
        await asyncio.sleep(app_settings.PRESENCE_HEARTBEAT)


async def _account_listener() -> None:
    """Receive the ``accounts`` group's messages (``user.disconnect``, ``user.push``), the Channels
    way: a channel of its own, ``group_add``, ``receive``. Retries with backoff while the layer is down."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    delay = 0.0
    joined_at = float("-inf")
    while True:
        try:
            if delay or time.monotonic() - joined_at > GROUP_REFRESH:
                await layer.group_add(events.ACCOUNTS_GROUP, channel)
                joined_at, delay = time.monotonic(), 0.0
            message = await asyncio.wait_for(layer.receive(channel), GROUP_REFRESH)
        except TimeoutError:
            continue
        except Exception:  # noqa: BLE001 - logged with its traceback by sessions_app.oplog
            # Broad on purpose: channels_redis raises redis-py's, OSError and asyncio errors alike.
            oplog.LAYER.failed("the account listener's receive")
            metrics.layer_error(metrics.RECEIVE)
            delay = min(delay * 2, 5.0) or 0.2
            await asyncio.sleep(delay)
            continue
        kind = message.get("type")
        if kind == events.USER_PUSH:
            push_to_users(message)
        elif kind == events.USER_DISCONNECT:
            close_user(message.get("user_id"), message.get("reason") or protocol.DEACTIVATED)
        else:
            logger.warning("account listener ignored a message of type %r", kind)


def close_user(user_id: Any, reason: str) -> None:
    """End every socket of ``user_id`` on this process (not_authenticated with ``reason``, 4401),
    each in a task of its own: a socket whose close must wait for its client holds up no one else."""
    for consumer in list(_connections.get(user_id, ())):
        consumer.end(reason)


def push_to_users(message: dict[str, Any]) -> None:
    """Hand a ``user.push`` message to this process's connections of its ``user_ids``."""
    for user_id in message.get("user_ids", ()):
        for consumer in list(_connections.get(user_id, ())):
            consumer.deliver(message)
