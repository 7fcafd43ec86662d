"""The consumer's delivery side: its read loop, its groups, and the frames it writes.

A mixin of SessionConsumer (sessions_app.consumers), kept apart so that the consumer module holds
the protocol only. It expects the consumer's ``closing``, ``session_version`` and ``_start``; the
state it keeps is declared on SessionConsumer.

Pushes do not come through the connection's own layer channel: the process channel
(sessions_app.fanout) is the group member and calls ``push`` on each local subscriber. So a
connection's ``channel_name`` is its identity (the ``exclude`` of its own pushes, its Connection
row) and nothing reads it from the layer.
"""

import asyncio
import itertools
import logging
import secrets
import types
from collections import deque
from collections.abc import Generator
from typing import Any

from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from . import events, services
from .protocol import UNAVAILABLE, ProtocolError

logger = logging.getLogger(__name__)

# A connection's channel_name: unique (a random per-process part and a counter; cheaper than a
# uuid4 per connection), valid as a Channels channel name, never read from the layer.
CONNECTION_PREFIX = f"connection!{secrets.token_hex(8)}."
_connection_numbers = itertools.count(1)


class SessionGroupsMixin:
    """The read loop, group membership through the process channel, and ordered writes."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the connection: the client's frames one at a time, in order; pushes between them.

        Replaces Channels' ``AsyncConsumer.__call__``, which reads the client and the connection's
        layer channel together through ``await_many_dispatch`` (a new task and an ``asyncio.wait``
        for every message). Pushes come from the process channel instead, so the loop awaits the
        client alone. Pushes that arrive while a frame is being handled are held and written after
        its reply, as a consumer that reads one message at a time would.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = f"{CONNECTION_PREFIX}{next(_connection_numbers)}"
        self.base_send = send
        try:
            while True:
                message = await receive()
                self._busy = True
                try:
                    await self.dispatch(message)
                finally:
                    self._busy = False
                    if self._held:
                        held, self._held = self._held, None
                        for push in held:
                            self.push(push)
        except StopConsumer:
            pass
        finally:
            # daphne cancels an application still running application_close_timeout (10 s) after
            # its client left, e.g. one stuck in a slow handler: clean up all the same (shielded,
            # so the cancellation does not cut it short).
            if not self._cleaned_up:
                self._cleaned_up = True
                await asyncio.shield(self._cleanup())

    # --- writing frames ------------------------------------------------------------------------

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        """As ``AsyncWebsocketConsumer.send``; a text frame goes through ``write``, in order."""
        if text_data is not None and bytes_data is None and not close:
            self.write(text_data)
        else:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    def write(self, text: str) -> None:
        """Send one text frame now, after any frame still waiting for the transport.

        daphne's send never waits (Twisted buffers the bytes), so the frame is written before this
        returns and no task is made. A server with backpressure (uvicorn waits while the socket's
        buffer is full) may suspend the send: the rest of it then runs in a task, and frames
        written meanwhile queue behind it, so one slow client delays its own frames only.
        """
        self.send_in_order({"type": "websocket.send", "text": text})

    def send_in_order(self, message: dict[str, Any]) -> None:
        """Send an ASGI message (a frame, or the close) as ``write`` does: in order, never waiting."""
        if self._outbox is not None:
            self._outbox.append(message)
            return
        sending = self.base_send(message)
        try:
            waiting_on = sending.send(None)
        except StopIteration:
            return
        except OSError:
            # uvicorn's ClientDisconnected (an OSError): the client left; its disconnect follows.
            logger.debug("a frame to a disconnected client dropped", exc_info=True)
            return
        self._outbox = deque()
        self._start(lambda: self._drain(sending, waiting_on))

    async def _drain(self, sending: Any, waiting_on: Any) -> None:
        try:
            await _finish(sending, waiting_on)
            while self._outbox:
                await self.base_send(self._outbox.popleft())
        except OSError:
            # uvicorn's ClientDisconnected (an OSError): the client left; its disconnect follows.
            logger.debug("frames to a disconnected client dropped", exc_info=True)
        finally:
            self._outbox = None

    # --- pushes --------------------------------------------------------------------------------

    def push(self, message: dict[str, Any]) -> None:
        """Called by the process channel for a push to a group this connection subscribed to.

        ``message`` is an ``events.push`` message. Dropped when the connection is closing, caused
        it (``exclude``), left the group, or already has its ``version`` of the joined session;
        held while a frame is being handled (at most ``SESSIONS_PUSH_BUFFER``; beyond that dropped:
        the client sees the version gap and re-joins with ``since``, docs/protocol.md).
        """
        if self._busy:
            if self._held is None:
                self._held = []
            if len(self._held) < settings.SESSIONS_PUSH_BUFFER:
                self._held.append(message)
            return
        group = message["group"]
        if self.closing or message["exclude"] == self.channel_name or group not in self._groups:
            return
        version = message.get("version", 0)
        if version and group == self._session_group:
            if version <= self.session_version:
                return  # already in this connection's snapshot or reply
            self.session_version = version
        self.write(message["text"])

    # --- groups --------------------------------------------------------------------------------

    async def subscribe_group(self, group: str) -> None:
        """Deliver ``group``'s pushes to this connection; raises ProtocolError(UNAVAILABLE) if the
        process channel cannot join the group on the layer."""
        if group in self._groups:
            return
        try:
            await self._process_channel.subscribe(group, self)
        except Exception:
            # Broad on purpose: channels_redis raises redis-py's, OSError and asyncio errors alike.
            logger.warning("channel layer unavailable for group_add", exc_info=True)
            raise ProtocolError(UNAVAILABLE, "Live updates are unavailable; reconnect later.") from None
        self._groups = (*self._groups, group)

    async def unsubscribe_group(self, group: str) -> None:
        """Remove this connection from ``group``; a layer failure is logged (the group expires)."""
        if group not in self._groups:
            return
        self._groups = tuple(g for g in self._groups if g != group)
        try:
            await self._process_channel.unsubscribe(group, self)
        except Exception:
            logger.warning("channel layer unavailable for group_discard", exc_info=True)

    async def subscribe(self, session_id: Any) -> None:
        """Subscribe to a session's pushes (before reading it, so that none is missed)."""
        await self.subscribe_group(events.session_group(session_id))

    async def unsubscribe_unless_joined(self, session_id: Any) -> None:
        """Undo ``subscribe`` after a failed join, unless that session is the joined one."""
        group = events.session_group(session_id)
        if group != self._session_group:
            await self.unsubscribe_group(group)

    async def enter_session(self, outcome: services.Outcome) -> None:
        """Make ``outcome``'s session the joined one, leaving the previous one's group."""
        group = events.session_group(outcome.session_id)
        await self.subscribe_group(group)
        if self._session_group and self._session_group != group:
            await self.unsubscribe_group(self._session_group)
        self._session_group = group
        self.session_id, self.role, self.session_version = outcome.session_id, outcome.role, outcome.version
        await self.publish(outcome.pushes)

    async def leave_session(self, pushes: list[events.Event]) -> None:
        """Forget the joined session and leave its group."""
        await self.unsubscribe_group(self._session_group)
        self._session_group, self.session_id, self.role, self.session_version = "", None, None, 0
        await self.publish(pushes)

    async def publish(self, pushes: list[events.Event]) -> None:
        """Broadcast events after their change committed; a layer failure is logged, not raised."""
        await events.apublish(pushes)


@types.coroutine
def _finish(coroutine: Any, waiting_on: Any) -> Generator[Any, Any, Any]:
    """Run the rest of ``coroutine``, which already ran until it yielded ``waiting_on``.

    The second half of an eager start (what asyncio's eager tasks do from Python 3.12): ``write``
    runs a send in place until it first suspends, and a task awaits this for the rest. Each value
    the task resumes us with (or raises into us, e.g. cancellation) goes on to ``coroutine``.
    """
    while True:
        try:
            resumed_with = yield waiting_on
        except BaseException as exc:  # noqa: BLE001 - not swallowed: thrown into the coroutine
            try:
                waiting_on = coroutine.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting_on = coroutine.send(resumed_with)
            except StopIteration as stop:
                return stop.value
