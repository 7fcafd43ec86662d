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
import contextlib
import logging
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from django.utils.module_loading import import_string

from . import batch, metrics, oplog
from .localchannels import PROCESS_MARK, LocalChannel, Sink, process_of

logger = logging.getLogger(__name__)

GROUP_KEY = "__fanout_group__"  # in a group message on the inner layer: the group it was sent to
TO_KEY = "__fanout_to__"  # in a message for another process's local channel: that channel


class FanoutChannelLayer(BaseChannelLayer):
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

    # --- the reader ----------------------------------------------------------------------------------

    async def _start(self) -> None:
        """Make the process channel and start its reader on the running loop, unless it runs there."""
        if not self.process_channel:
            self.process_channel = await self.inner.new_channel(PROCESS_MARK)
        loop = asyncio.get_running_loop()
        reader = self._reader
        if reader is None or reader.done() or reader.get_loop() is not loop:
            self._lock = None  # an asyncio.Lock belongs to the loop it was first used on
            self._reader = loop.create_task(self._read(), name="fanout-layer-reader")

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the reader (tests, between event loops); returns it, for the caller to await."""
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            return reader
        return None

    async def refresh(self) -> None:
        """Add the process channel to its groups again, and leave those without local members;
        raises what the inner layer raised."""
        for group in tuple(self._joined):
            if group in self.groups:
                await self.inner.group_add(group, self.process_channel)
            else:
                await self._reconcile(group)

    async def _read(self) -> None:
        """Receive the process channel's messages until cancelled, retrying while the layer is down."""
        receive = batch.receiver(self.inner, self.process_channel, self.batch)
        delay = 0.0  # 0: the inner layer answered last time
        housekept = refreshed = time.monotonic()
        while True:
            try:
                if delay:
                    await self.refresh()  # a restarted Redis has forgotten the groups
                    logger.info("channel layer is back; %s rejoined its groups", self.process_channel)
                    delay, self.down = 0.0, False
                    oplog.LAYER.ok()
                messages = await receive()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged with its traceback by sessions_app.oplog
                # Broad on purpose: channels_redis raises redis-py's, OSError and asyncio errors alike.
                # One line per outage, then a count (sessions_app.oplog), not a line per retry.
                oplog.LAYER.failed("the process channel's receive")
                metrics.layer_error(metrics.RECEIVE)
                self.down = True
                delay = min(delay * 2, 5.0) or 0.2
                self._answered.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._answered.wait(), delay)
                continue
            for targets, message in messages:
                self._route(targets, message)
            now = time.monotonic()
            if now - housekept > self.expiry:
                housekept = now
                self._forget_idle(now)
            if now - refreshed > self.refresh_interval:
                refreshed = now
                await self.refresh()

    def _route(self, targets: Any, message: dict[str, Any]) -> None:
        """Hand one message of the process channel to the local channels it is for.

        ``targets``: the channel names the inner layer addressed (channels_redis' core layer tells,
        in ``__asgi_channel__``), or None for "the process channel".
        """
        group = message.pop(GROUP_KEY, None)
        to = message.pop(TO_KEY, None)
        for target in [self.process_channel] if targets is None else targets:
            if target != self.process_channel:
                local = self.locals.get(target)  # a local channel the inner layer addressed itself
                if local is not None:
                    local.deliver(message, self.capacity, target)
            elif group is not None:
                for channel in tuple(self.groups.get(group, ())):
                    local = self.locals.get(channel)
                    if local is not None:
                        local.deliver(dict(message), self.capacity, channel)  # each its own, as Channels gives
            elif to is not None:
                local = self.locals.get(to)
                if local is not None:
                    local.deliver(message, self.capacity, to)
            else:
                logger.warning("process channel got a message for no channel: type %r", message.get("type"))

    def _forget_idle(self, now: float) -> None:
        """Forget local channels nobody received from, or attached to, for ``expiry`` seconds."""
        idle = [
            name
            for name, local in self.locals.items()
            if local.sink is None and not local.waiters and now - local.idle_since > self.expiry
        ]
        for name in idle:
            logger.debug("forgot idle local channel %s", name)
            self.detach(name)
