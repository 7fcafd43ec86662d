"""A channel layer that delivers group messages once per process, then to that process's members.

Configured like any layer, around the layer that carries messages between processes::

    CHANNEL_LAYERS = {"default": {
        "BACKEND": "sessions_app.layers.FanoutChannelLayer",
        "CONFIG": {"inner": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {...}}},
    }}

Consumers use the ordinary API (``new_channel``, ``receive``, ``send``, ``group_add``,
``group_discard``, ``group_send``). Channels made here are *local* (``<process channel>.<n>``, see
sessions_app.localchannels); the process has one channel on the inner layer, read in batches by one
task; a group message crosses the inner layer once per process with members. How and why, with the
channels_redis work it builds on (channels_redis#83, ``RedisPubSubLoopLayer.groups``):
docs/channels.md, "How FanoutChannelLayer works".
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from django.utils.module_loading import import_string

from . import metrics, oplog
from .layerreader import GROUP_KEY, TO_KEY, ProcessChannelReader
from .localchannels import LocalChannel, Sink, process_of

logger = logging.getLogger(__name__)


class FanoutChannelLayer(ProcessChannelReader, BaseChannelLayer):
    """The channel layer API over ``inner`` (``{"BACKEND", "CONFIG"}``, any Channels layer).

    ``capacity``: messages a local channel without a reader holds (the oldest is dropped beyond
    it, as channels_redis' BoundedQueue does for its receive buffers; ``send`` raises ChannelFull
    instead). ``expiry``: seconds after which an unread local channel is forgotten. ``batch``:
    messages read from the inner layer per round trip (channels_redis' core layer).
    """

    extensions = ["groups", "flush"]

    def __init__(self, inner: dict[str, Any], capacity: int = 100, expiry: int = 60, batch: int = 100) -> None:
        super().__init__(expiry=expiry, capacity=capacity)
        self.inner = import_string(inner["BACKEND"])(**inner.get("CONFIG", {}))
        self.batch = batch
        self.process_channel = ""
        self.locals: dict[str, LocalChannel] = {}
        self.groups: dict[str, set[str]] = {}  # group -> local channel names
        self._joined: set[str] = set()  # groups the process channel is in, as far as this process knows
        self._lock: asyncio.Lock | None = None
        self._reader: asyncio.Task[None] | None = None
        self._numbers = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.down = False  # the reader lost the inner layer and has not reached it since
        self._answered = asyncio.Event()  # wakes the reader's retry wait once the inner layer answers
        group_expiry = getattr(self.inner, "group_expiry", None)
        # Re-add the process channel to its groups before channels_redis forgets it (group_expiry).
        self.refresh_interval = min(3600.0, group_expiry / 2) if group_expiry else 3600.0

    # --- channels ----------------------------------------------------------------------------------

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new local channel name, ``<process channel>.<n>``; starts the reader if needed."""
        await self._start()
        self._numbers += 1
        name = f"{self.process_channel}.{self._numbers}"
        self.locals[name] = LocalChannel()
        return name

    def attach(self, channel: str, sink: Sink) -> None:
        """Hand ``channel``'s messages to ``sink(message)`` as they arrive, instead of queueing them
        for ``receive``. ``sink`` must not raise and must not block; it keeps its own order and bound."""
        local = self.locals.setdefault(channel, LocalChannel())
        local.sink = sink
        queued, local.messages = local.messages, None
        for message in queued or ():
            sink(message)

    def detach(self, channel: str) -> None:
        """Forget ``channel`` and its group memberships (a consumer that is done with it); the
        process channel leaves, in a task, the groups that had no other local member."""
        local = self.locals.pop(channel, None)
        if local is not None:
            for group in local.groups or ():
                self._forget_member(group, channel)
                if group not in self.groups and group in self._joined:
                    self._background(self._reconcile(group))

    def _background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # a strong reference while it runs
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The membership expires (group_expiry) or is dropped at the next refresh.
            oplog.LAYER.failed("group_discard", task.exception())
            metrics.layer_error(metrics.GROUP_DISCARD)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``; raises ChannelFull when a local channel is full."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        local = self.locals.get(channel)
        if local is not None:
            if local.sink is None and local.messages is not None and len(local.messages) >= self.capacity:
                raise ChannelFull(channel)
            local.deliver(message, self.capacity, channel)
            return
        process = process_of(channel)
        if process is not None:
            await self.inner.send(process, {**message, TO_KEY: channel})
        else:
            await self.inner.send(channel, message)
        self._reached()

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message of ``channel`` (a local channel, or any name of the inner layer)."""
        local = self.locals.get(channel)
        if local is None:
            if not self.process_channel or process_of(channel) != self.process_channel:
                return await self.inner.receive(channel)
            await self._start()
            local = self.locals[channel] = LocalChannel()  # forgot while idle (_forget_idle): known again
        return await local.receive()

    async def ping(self) -> None:
        """A message through the inner layer to this process's reader and back (``/healthz``):
        raises what the inner layer raised; waits for ever while the reader is stalled (the caller
        bounds it)."""
        channel = await self.new_channel()
        try:
            await self.inner.send(self.process_channel, {"type": "fanout.ping", TO_KEY: channel})
            self._reached()
            await self.receive(channel)
        finally:
            self.detach(channel)

    # --- groups ------------------------------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``; raises what the inner layer raised (membership undone)."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        local = self.locals.get(channel)
        if local is None:
            await self.inner.group_add(group, channel)
            return
        if local.groups is None:
            local.groups = set()
        local.groups.add(group)
        self.groups.setdefault(group, set()).add(channel)
        try:
            await self._reconcile(group)
        except BaseException:
            local.groups.discard(group)
            self._forget_member(group, channel)
            raise

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` (nothing if it is not in it); raises what the inner raised."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        local = self.locals.get(channel)
        if local is None:
            await self.inner.group_discard(group, channel)
            return
        if local.groups:
            local.groups.discard(group)
        self._forget_member(group, channel)
        await self._reconcile(group)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every member of ``group``: one inner message per process."""
        self.require_valid_group_name(group)
        await self.inner.group_send(group, {**message, GROUP_KEY: group})
        self._reached()

    def _reached(self) -> None:
        """The inner layer answered a send: while the reader waits to retry, wake it now (after a
        Redis failover, the first publish that reaches the new primary ends the reader's wait)."""
        if self.down:
            self._answered.set()

    async def flush(self) -> None:
        """Forget every local channel and group, and flush the inner layer."""
        self.locals.clear()
        self.groups.clear()
        self._joined.clear()
        if hasattr(self.inner, "flush"):
            await self.inner.flush()

    def _forget_member(self, group: str, channel: str) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.discard(channel)
            if not members:
                del self.groups[group]

    async def _reconcile(self, group: str) -> None:
        """Make the process channel's membership of ``group`` match whether it has local members.

        One change at a time, so an add and a discard of the same group cannot reach Redis in the
        other order. While the reader cannot reach the inner layer, an add is sent even for a group
        already joined (a restarted Redis forgot it), and an answer wakes the reader.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            wanted = group in self.groups
            if wanted and (group not in self._joined or self.down):
                await self.inner.group_add(group, self.process_channel)
                self._joined.add(group)
                self._reached()
            elif not wanted and group in self._joined:
                self._joined.discard(group)
                await self.inner.group_discard(group, self.process_channel)
