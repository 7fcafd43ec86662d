"""The local channels of FanoutChannelLayer (sessions_app.layers): one per consumer of this process,
with no key or subscription on the inner layer. Each holds its group names and either a sink (a
callable its messages are handed to) or a bounded queue for ``receive``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import metrics

logger = logging.getLogger(__name__)

PROCESS_MARK = "fanout-process"  # in every process channel's name; see process_of

Sink = Callable[[dict[str, Any]], None]


def process_of(channel: str) -> str | None:
    """The process channel of a local channel name (``<process channel>.<n>``), else None."""
    head, _, tail = channel.rpartition(".")
    if tail.isdigit() and PROCESS_MARK in head:
        return head
    return None


class LocalChannel:
    """One local channel: its groups, and either the callable its messages go to or their queue.

    The queue and its waiters are made on first use: a channel with a sink (every connection of
    SessionConsumer) holds none, which keeps idle connections small.
    """

    __slots__ = ("groups", "idle_since", "messages", "overflowing", "sink", "waiters")

    def __init__(self) -> None:
        self.groups: set[str] | None = None
        self.sink: Sink | None = None
        self.messages: deque[dict[str, Any]] | None = None
        self.waiters: list[asyncio.Future[None]] | None = None
        self.idle_since = time.monotonic()
        self.overflowing = False  # dropping messages since it was last read empty (logged once)

    def deliver(self, message: dict[str, Any], capacity: int, name: str) -> None:
        """Hand ``message`` to the sink, or queue it (at most ``capacity``; the oldest is dropped
        beyond it, as channels_redis#212's bounded receive buffers do) and wake one receiver.
        ``name`` is for the log. Never raises: a sink's exception is logged, so that one member's
        failure does not cost the others their message."""
        sink = self.sink
        if sink is not None:
            try:
                sink(message)
            except Exception:
                logger.exception("delivery to %s failed", name)
            return
        if self.messages is None:
            self.messages = deque()
        if len(self.messages) >= capacity:
            self.messages.popleft()  # channels_redis#212: better drop than grow without bound
            metrics.push_dropped(metrics.OVERFLOW)
            if not self.overflowing:
                self.overflowing = True
                logger.warning("local channel %s is full (%d); dropping its oldest messages", name, capacity)
        elif not self.messages:
            self.overflowing = False
        self.messages.append(message)
        for waiter in self.waiters or ():
            if not waiter.done():
                waiter.set_result(None)
                break

    async def receive(self) -> dict[str, Any]:
        """The next queued message, waiting for one."""
        while not self.messages:
            waiter = asyncio.get_running_loop().create_future()
            if self.waiters is None:
                self.waiters = []
            self.waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)
                self.idle_since = time.monotonic()
        return self.messages.popleft()
