"""A connection's own receive loop on a channel layer without ``attach`` (stock channels_redis,
``CHANNEL_LAYER_FANOUT=0``), which survives the layer failing.

Channels' consumers end when a receive raises; here a failed receive (Redis down, restarting, or
failing over to a replica under Sentinel) is retried with a growing, jittered delay, the
connection's groups added again first, so the socket stays open and its client fills the gap by
version (docs/protocol.md, "Gaps"). Failures count towards the process's one channel-layer outage
(sessions_app.oplog.LAYER: one warning at the first, one line with the count when it is back);
here an INFO line when the first connection loses the layer and when the last gets it back.
FanoutChannelLayer has one reader per process instead
(sessions_app.layers), which retries the same way.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from . import oplog

logger = logging.getLogger(__name__)

FIRST_DELAY = 0.2  # seconds before the first retry; doubled after each failure, up to MAX_DELAY
MAX_DELAY = 5.0

_failing: set[str] = set()  # channels whose receive is failing now
_most = 0  # the most of them at once in the current outage


async def receive_forever(
    layer: Any, channel: str, deliver: Callable[[dict[str, Any]], None], back: Callable[[], Awaitable[None]]
) -> None:
    """Hand each message of ``channel`` on ``layer`` to ``deliver`` until cancelled; after a
    failure, ``await back()`` (re-add the groups) before the next receive (a failure there is
    retried too)."""
    delay = 0.0  # 0: the last receive worked
    while True:
        try:
            if delay:
                await back()
            message = await layer.receive(channel)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - channels_redis raises redis-py's, OSError and asyncio errors alike
            _failed(channel)
            delay = min(delay * 2, MAX_DELAY) or FIRST_DELAY
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - spreads the retries
            continue
        if delay:
            delay = 0.0
            _recovered(channel)
        deliver(message)


def forget(channel: str) -> None:
    """The connection of ``channel`` ended: it no longer counts as failing."""
    _failing.discard(channel)


def _failed(channel: str) -> None:
    global _most
    if not _failing:
        logger.info("channel layer receive failed; connections retry until it is back")
    oplog.LAYER.failed("a connection's receive")
    _failing.add(channel)
    _most = max(_most, len(_failing))


def _recovered(channel: str) -> None:
    global _most
    _failing.discard(channel)
    if not _failing:
        logger.info("channel layer receive is back (%d connections had lost it)", _most)
        oplog.LAYER.ok()
        _most = 0
