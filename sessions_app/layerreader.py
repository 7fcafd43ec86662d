"""The reader of FanoutChannelLayer's process channel (a base of the layer, sessions_app/layers.py):
one task per process receives the inner layer's messages in batches, hands each to the local
channels it is for, retries while the inner layer is down (one log line per outage:
sessions_app.oplog) and adds the process channel to its groups again when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from . import batch, metrics, oplog
from .localchannels import PROCESS_MARK

logger = logging.getLogger("sessions_app.layers")

GROUP_KEY = "__fanout_group__"  # in a group message on the inner layer: the group it was sent to
TO_KEY = "__fanout_to__"  # in a message for another process's local channel: that channel


class ProcessChannelReader:
    """The reader methods of FanoutChannelLayer. Uses its ``inner`` layer, ``process_channel``,
    ``batch``, ``capacity``, ``expiry``, ``refresh_interval``, ``groups`` (group -> local
    members), ``locals`` (name -> LocalChannel), ``_joined``, ``_reader``, ``_lock``, ``_answered``,
    ``down``, ``_reconcile`` and ``detach``."""

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
