"""This process's heartbeat, which keeps its connections (and so its users' presence) alive.

Every ``SESSIONS_PRESENCE_HEARTBEAT`` seconds the process refreshes its ServerProcess row and
removes processes whose heartbeat is older than ``SESSIONS_PRESENCE_TTL`` (killed with SIGKILL,
or stalled), with their connections, pushing ``presence`` for the sessions their users left.
So a dead process's users vanish from presence listings within the TTL, and the others are told
within TTL + one heartbeat.
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from . import events, services

logger = logging.getLogger(__name__)

_task: asyncio.Task[None] | None = None


def ensure_running() -> None:
    """Start the heartbeat on the running event loop, unless it already runs there."""
    global _task
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _task = loop.create_task(_beat(), name="sessions-heartbeat")


async def _beat() -> None:
    beat = database_sync_to_async(services.server_heartbeat)
    while True:
        try:
            await events.apublish(await beat())
        except Exception:
            # Broad on purpose: the database may be down (any driver error); the next beat retries.
            logger.warning("heartbeat failed", exc_info=True)
        await asyncio.sleep(settings.SESSIONS_PRESENCE_HEARTBEAT)
