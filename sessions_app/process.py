"""This server process's own state: its open connections, its heartbeat, deactivated users.

- **Heartbeat.** Every ``SESSIONS_PRESENCE_HEARTBEAT`` seconds the process refreshes its
  ServerProcess row and removes processes whose heartbeat is older than ``SESSIONS_PRESENCE_TTL``
  (killed with SIGKILL, or stalled), with their connections, pushing ``presence`` for the sessions
  their users left. A dead process's users vanish from presence listings within the TTL, and the
  others are told within TTL + one heartbeat.
- **Accounts.** The process channel (sessions_app.fanout) is in the ``accounts`` group; a user deactivated or
  deleted through the ORM (the admin, ``user.save()``) is disconnected from every process once the
  change commits. One group membership per process instead of one per connection keeps the
  handshake free of channel-layer round trips. As a backstop for changes no signal reports
  (``QuerySet.update()``, SQL, another process on the in-memory layer), each heartbeat asks the
  database which of this process's users are no longer active: one query per heartbeat, so such a
  user is disconnected within ``SESSIONS_PRESENCE_HEARTBEAT`` seconds.
- **Group refresh.** channels_redis forgets a group member after ``group_expiry`` (2 hours in
  project.settings); every ``GROUP_REFRESH`` seconds the heartbeat adds the process channel to its groups
  again (``group_add`` is idempotent; after a Redis restart the channel's reader does it at once).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connections

from . import events, fanout, selectors, services
from .models import ServerProcess

if TYPE_CHECKING:
    from .consumers import SessionConsumer

logger = logging.getLogger(__name__)

GROUP_REFRESH = 3600.0  # seconds; half the group_expiry of 7200 set in project.settings

_connections: dict[int, set[SessionConsumer]] = defaultdict(set)
_tasks: dict[str, asyncio.Task[None]] = {}
_exit_hook = False


def register(consumer: SessionConsumer) -> None:
    """Called when a connection authenticates."""
    _connections[consumer.user["id"]].add(consumer)


def unregister(consumer: SessionConsumer) -> None:
    """Called when an authenticated connection closes."""
    user_id = consumer.user["id"]
    mine = _connections.get(user_id)
    if mine is not None:
        mine.discard(consumer)
        if not mine:
            del _connections[user_id]


def _forget_this_process() -> None:
    """At interpreter exit (daphne stopped with SIGTERM or Ctrl-C): delete this process's row and,
    by cascade, its connections, so a restart does not count them against the users' connection
    limit nor show them present until the TTL passes. A SIGKILL skips this; the TTL covers it.
    """
    try:
        ServerProcess.objects.filter(pk=services.SERVER_ID).delete()
    except DatabaseError:
        logger.debug("could not delete this process's row at exit", exc_info=True)
    finally:
        connections.close_all()


def ensure_running() -> fanout.ProcessChannel:
    """Start the heartbeat and the process channel's reader on the running loop, unless they run
    there (tests make new loops and layers); returns the process channel of the default layer.
    """
    global _exit_hook
    if not _exit_hook:
        atexit.register(_forget_this_process)
        _exit_hook = True
    loop = asyncio.get_running_loop()
    task = _tasks.get("heartbeat")
    if task is None or task.done() or task.get_loop() is not loop:
        _tasks["heartbeat"] = loop.create_task(_heartbeat(), name="sessions-heartbeat")
    return fanout.channel_for(get_channel_layer(), close_user)


async def _heartbeat() -> None:
    beat = database_sync_to_async(services.server_heartbeat)
    not_active = database_sync_to_async(selectors.users_not_active)
    refreshed_at = time.monotonic()
    while True:
        try:
            await events.apublish(await beat())
            if _connections:
                for user_id in await not_active(user_ids=list(_connections)):
                    close_user(user_id)
            if time.monotonic() - refreshed_at > GROUP_REFRESH:
                refreshed_at = time.monotonic()
                for channel in fanout.channels():
                    await channel.refresh()
        except Exception:
            # Broad on purpose: the database or Redis may be down (any driver error); the next beat retries.
            logger.warning("heartbeat failed", exc_info=True)
        await asyncio.sleep(settings.SESSIONS_PRESENCE_HEARTBEAT)


def close_user(user_id: Any) -> None:
    """Close every socket of ``user_id`` on this process (not_authenticated, 4401), each in a task
    of its own: a socket whose close must wait for its client holds up no one else."""
    for consumer in list(_connections.get(user_id, ())):
        consumer.user_deactivated()
