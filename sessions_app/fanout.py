"""One channel per server process: group pushes fanned out to the local members, account events.

Channels' usual pattern adds each connection's channel to its groups, so a push to a group of n
members costs n layer messages (n Redis list pushes and msgpack decodes on channels_redis' core
layer, n queue puts on the in-memory one) and n wake-ups of n consumers. Here the member of a group
is the process's channel instead: a push reaches each process that has members once, and the
process hands its pre-encoded text to each local member (``SessionConsumer.push``), which writes it
to its socket. Membership is counted per process: the first local member of a group adds the
process channel to it, the last one to leave discards it.

The same channel is in the ``accounts`` group (``user.deactivated``, see sessions_app.process).

There is one ProcessChannel per channel-layer instance (a server process has one; tests make
several to stand for several processes). Its reader survives a Redis outage: it retries with
backoff and, once Redis answers, adds the channel to its groups again (a restarted Redis, which
keeps nothing on disk here, has forgotten them; ``group_add`` is idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import events

if TYPE_CHECKING:
    from .consumers import SessionConsumer

logger = logging.getLogger(__name__)

_channels: dict[int, ProcessChannel] = {}


class ProcessChannel:
    """This process's channel on one channel layer: its groups, their local members, its reader.

    ``members`` maps a group name to the local consumers subscribed to it. Group changes on the
    layer are made one at a time (``_lock``), so that an add and a discard of the same group
    cannot reach Redis in the other order.
    """

    def __init__(self, layer: Any, on_user_deactivated: Callable[[Any], None]) -> None:
        self.layer = layer
        self.name = ""
        self.members: dict[str, set[SessionConsumer]] = {}
        self._joined: set[str] = set()  # groups the channel is in, as far as this process knows
        self._lock = asyncio.Lock()
        self._on_user_deactivated = on_user_deactivated
        self.reader: asyncio.Task[None] | None = None
        self.down = False  # the reader lost the layer and has not reached it since
        self._layer_answered = asyncio.Event()  # ends the reader's wait before its next retry

    async def _channel(self) -> str:
        if not self.name:
            self.name = await self.layer.new_channel()
        return self.name

    async def subscribe(self, group: str, consumer: SessionConsumer) -> None:
        """Deliver ``group``'s pushes to ``consumer``; raises what the layer raised if it fails,
        also for a group the channel is already in while the reader cannot reach the layer (no
        push would arrive): the layer is asked again, and an answer wakes the reader."""
        self.members.setdefault(group, set()).add(consumer)
        try:
            await self._reconcile(group)
        except BaseException:
            self._forget(group, consumer)
            raise

    async def unsubscribe(self, group: str, consumer: SessionConsumer) -> None:
        """Stop delivering ``group``'s pushes to ``consumer``; raises what the layer raised."""
        self._forget(group, consumer)
        await self._reconcile(group)

    def _forget(self, group: str, consumer: SessionConsumer) -> None:
        members = self.members.get(group)
        if members is not None:
            members.discard(consumer)
            if not members:
                del self.members[group]

    async def _reconcile(self, group: str) -> None:
        """Make the channel's membership of ``group`` match whether it has local members."""
        async with self._lock:
            wanted = group in self.members
            if wanted and (group not in self._joined or self.down):
                await self.layer.group_add(group, await self._channel())
                self._joined.add(group)
                self._layer_answered.set()
            elif not wanted and group in self._joined:
                self._joined.discard(group)
                await self.layer.group_discard(group, self.name)

    async def refresh(self) -> None:
        """Add the channel to its groups again: channels_redis forgets a member after its
        ``group_expiry`` (2 hours in project.settings). Raises what the layer raised."""
        async with self._lock:
            channel = await self._channel()
            for group in (events.ACCOUNTS_GROUP, *self._joined):
                await self.layer.group_add(group, channel)

    async def read(self) -> None:
        """Receive this channel's messages until cancelled, retrying while the layer is down."""
        delay = 0.0  # 0: the layer answered last time
        while True:
            try:
                if delay or not self.name:
                    await self.refresh()
                    if delay:
                        logger.info("channel layer is back; %s rejoined its groups", self.name)
                    delay = 0.0
                    self.down = False
                message = await self.layer.receive(self.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Broad on purpose: channels_redis raises redis-py's, OSError and asyncio errors alike.
                # The traceback once per outage, not at every retry.
                logger.warning("process channel: channel layer failed; retrying", exc_info=not delay)
                self.down = True
                delay = min(delay * 2, 5.0) or 0.2
                self._layer_answered.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._layer_answered.wait(), delay)
                continue
            self.handle(message)

    def handle(self, message: dict[str, Any]) -> None:
        """Act on one layer message: a push for a group's local members, or an account event."""
        kind = message.get("type")
        if kind == events.SESSION_PUSH:
            members = self.members.get(message.get("group", ""))
            if members:
                for consumer in tuple(members):
                    try:
                        consumer.push(message)  # a client that is gone is dropped in send_in_order
                    except Exception:
                        # One member's failure must not cost the others their push.
                        logger.exception("push to %s failed", consumer.channel_name)
        elif kind == events.USER_DEACTIVATED:
            self._on_user_deactivated(message.get("user_id"))
        else:
            logger.warning("process channel ignored a message of unknown type %r", kind)


def channel_for(layer: Any, on_user_deactivated: Callable[[Any], None]) -> ProcessChannel:
    """This process's channel on ``layer``, its reader started on the running loop if it is not
    running there (tests make new loops and layers)."""
    loop = asyncio.get_running_loop()
    channel = _channels.get(id(layer))
    if channel is None or channel.layer is not layer:
        channel = _channels[id(layer)] = ProcessChannel(layer, on_user_deactivated)
    reader = channel.reader
    if reader is None or reader.done() or reader.get_loop() is not loop:
        channel.reader = loop.create_task(channel.read(), name="sessions-process-channel")
    return channel


def channels() -> list[ProcessChannel]:
    """Every process channel of this process (one per channel-layer instance)."""
    return list(_channels.values())


def reset() -> list[asyncio.Task[None]]:
    """Forget every process channel; returns their readers, cancelled (for tests to await)."""
    readers = [c.reader for c in _channels.values() if c.reader is not None and not c.reader.done()]
    for reader in readers:
        reader.cancel()
    _channels.clear()
    return readers
