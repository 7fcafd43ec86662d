"""The consumer's transport: reads one message at a time, ordered writes, bounded buffers.

``OrderedConsumer`` is Channels' ``AsyncJsonWebsocketConsumer`` with its loop replaced, for speed,
by one that keeps Channels' rules: one message at a time, each dispatched by its ``type`` to the
method of that name with dots as underscores (``get_handler_name``: ``group_send`` of
``{"type": "chat.message"}`` runs ``async def chat_message(self, event)``). The loop awaits the
client alone; layer messages are handed over by the layer (``FanoutChannelLayer.attach``; one
reader task on any other layer) and wait, at most ``SESSIONS_PUSH_BUFFER``, while a message is
handled. A handler that raises is logged and the connection goes on. Writes never wait: a frame
goes to the server at once or queues behind a send the server made wait (uvicorn); what a client
that does not read makes the server hold is bounded by ``SESSIONS_MAX_SEND_BUFFER`` bytes, past
which the connection is closed with 4008 ("too slow"; the send side is sessions_app/sendbuffer.py).
The departures and their measured gains:
docs/channels.md.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from . import channelreader, metrics, protocol, sockets
from .conf import app_settings
from .sendbuffer import ConnectionState, SendBuffer, resume
from .timers import Timers

logger = logging.getLogger(__name__)


Handler = Callable[[Any, dict[str, Any]], Coroutine[Any, Any, None]]
_methods: dict[tuple[type, str], Handler | None] = {}  # (class, type) -> its method, or None


class OrderedConsumer(SendBuffer, AsyncJsonWebsocketConsumer):
    """The loop, layer delivery and ordered, bounded writes of a WebSocket consumer."""

    state = ConnectionState.CONNECTING
    # Handlers of channel-layer message types with no method of their name: ``{type: handler}``,
    # each ``async def handler(consumer, message)`` (SessionConsumer: registry.MESSAGE_HANDLERS).
    message_handlers: Mapping[str, Handler] = {}
    _held: deque[dict[str, Any]] | None = None  # not None while a message is handled: what waits for it
    _running: asyncio.Task[None] | None = None  # a layer message's handler that suspended
    _outbox: deque[dict[str, Any]] | None = None  # messages waiting behind a send the server made wait
    _queued = 0  # bytes of the frames in the outbox (UTF-8 for text)
    _socket: sockets.SocketBuffer | None = None
    _channel_reader: asyncio.Task[None] | None = None
    _handling = False  # True while a message from the client (or the server's connect) is handled
    _close_when_idle: int | None = None  # a close code to send once that message is handled
    # For the line logged when the socket ends (sessions_app.oplog.connection_ended).
    close_code: int | None = None  # the close code the server sent
    close_reason = ""  # why the server closed (an error code, "too_slow")
    client_close_code: int | None = None  # the code of the client's websocket.disconnect
    opened_at = 0.0  # time.monotonic() when the connection started
    frames_in = frames_out = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the connection until the client leaves; cleanup runs whatever ends it."""
        self.scope = scope
        self.base_send = send
        self.opened_at = time.monotonic()
        self.timers = Timers()
        self._socket = sockets.socket_buffer(send)
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        try:
            if self.channel_layer is not None:
                self.channel_name = await self.channel_layer.new_channel()
                attach = getattr(self.channel_layer, "attach", None)
                if attach is not None:
                    attach(self.channel_name, self.deliver)
                else:
                    self._channel_reader = asyncio.ensure_future(self._read_channel())
            while True:
                message = await receive()
                if message["type"] == "websocket.receive":
                    self.frames_in += 1
                elif message["type"] == "websocket.disconnect":
                    self.client_close_code = message.get("code")
                if self._running is not None:
                    if message["type"] == "websocket.disconnect":
                        self._running.cancel()  # its client is gone
                    else:
                        await asyncio.shield(self._running)
                self._held = deque()
                self._handling = True
                try:
                    await self.dispatch(message)
                finally:
                    self._handling = False
                    self._drain()
                if self._close_when_idle is not None:
                    self.close_now(self._close_when_idle)
                # Not held while waiting for the next one: an idle socket would keep its last frame
                # (the token frame, or up to SESSIONS_MAX_MESSAGE_BYTES of a request; issue 16).
                message = None
        except StopConsumer:
            pass
        finally:
            # daphne cancels an application still running application_close_timeout (10 s) after
            # its client left, e.g. one stuck in a slow handler: clean up all the same (shielded,
            # so the cancellation does not cut it short).
            await asyncio.shield(self.close_connection())

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Run the handler of ``message["type"]``: the method Channels' naming rule gives, else the
        one registered in ``message_handlers`` for that type (looked up once per class and type)."""
        key = (type(self), message["type"])
        handler = _methods.get(key, ...)
        if handler is ...:
            handler = _methods[key] = getattr(type(self), get_handler_name(message), None)
        if handler is None:
            handler = self.message_handlers.get(key[1])
        if handler is None:
            logger.warning("no handler for a message of type %r", message["type"])
            return
        await handler(self, message)

    # --- channel-layer messages ----------------------------------------------------------------------

    def deliver(self, message: dict[str, Any]) -> None:
        """Called for each channel-layer message of this connection: handle it now, or after the
        message being handled (at most ``SESSIONS_PUSH_BUFFER`` wait; beyond that it is dropped)."""
        if self.state is not ConnectionState.OPEN:
            return
        held = self._held
        if held is None:
            self._held = deque((message,))
            self._drain()
        elif len(held) < app_settings.PUSH_BUFFER:
            held.append(message)
        else:
            logger.debug("%s: dropped a %r message (busy, %d waiting)", self.channel_name, message["type"], len(held))
            metrics.push_dropped(metrics.BUSY)

    def _drain(self) -> None:
        """Handle the waiting messages in order; one whose handler suspends takes the rest along."""
        held = self._held
        while held:
            message = held.popleft()
            coroutine = self.dispatch(message)
            try:
                waiting_on = coroutine.send(None)
            except StopIteration:
                continue
            except Exception:
                logger.exception("handling a %r message failed", message["type"])
                continue
            self._running = self.timers.start(self._finish(coroutine, waiting_on, held))
            return
        self._held = None

    async def _finish(self, coroutine: Any, waiting_on: Any, held: deque[dict[str, Any]]) -> None:
        try:
            try:
                await resume(coroutine, waiting_on)
            except Exception:
                logger.exception("handling a channel-layer message failed")
            while held:
                message = held.popleft()
                try:
                    await self.dispatch(message)
                except Exception:
                    logger.exception("handling a %r message failed", message["type"])
        finally:
            self._held = None
            self._running = None

    async def _read_channel(self) -> None:
        """On a layer without ``attach``: receive this connection's channel as Channels does,
        retrying while the layer fails (sessions_app.channelreader)."""
        await channelreader.receive_forever(
            self.channel_layer, self.channel_name, self.deliver, self.channel_layer_back
        )

    async def channel_layer_back(self) -> None:
        """Override: what to redo when the channel layer answers again after failing (called before
        the next receive; raising retries later). SessionConsumer adds its groups again."""

    # --- writes ------------------------------------------------------------------------------------

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        """As ``AsyncWebsocketConsumer.send``: a frame (and the close, if asked), in order."""
        if text_data is not None:
            self.write(text_data)
        elif bytes_data is not None:
            self.send_in_order({"type": "websocket.send", "bytes": bytes_data}, len(bytes_data))
        if close:
            await self.close(close if isinstance(close, int) and close is not True else None)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        """As ``AsyncWebsocketConsumer.accept``; frames flow from here on."""
        await super().accept(subprotocol, headers)
        self.state = ConnectionState.OPEN

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        """As ``AsyncWebsocketConsumer.close`` (before ``accept``: refuse the handshake, HTTP 403):
        after the frames before it; later frames are dropped."""
        self.close_now(code, reason)

    def close_now(self, code: int | None = None, reason: str | None = None) -> None:
        """``close`` without a suspension point: no client frame is handled between the call and
        the close (the close frame goes, or queues behind what the server made wait)."""
        if self.state is ConnectionState.OPEN or self.state is ConnectionState.CONNECTING:
            self.state = ConnectionState.CLOSING
            self.timers.cancel_timer()
            code = self.close_code = code or protocol.CLOSE_NORMAL
            if self._outbox is None and self._socket is not None and self._socket.close(code):
                return  # a code daphne refuses from an application (1012), sent by the socket itself
            message: dict[str, Any] = {"type": "websocket.close", "code": code}
            if reason:
                message["reason"] = reason
            self.send_in_order(message)

    def close_when_idle(self, code: int) -> None:
        """Close with ``code`` once the client's message being handled got its reply (at once
        when none is): sessions_app.drain's 1012. Messages from the client after it are not handled."""
        if self.state is not ConnectionState.OPEN:
            return
        if self._handling:
            self._close_when_idle = code
        else:
            self.close_now(code)  # now, not in a task: a frame received meanwhile would be handled

    # --- closing -----------------------------------------------------------------------------------

    async def close_connection(self) -> None:
        """Called once when the connection ends, however it ends: leave the layer, stop tasks."""
        if self.state is ConnectionState.CLOSED:
            return
        self.state = ConnectionState.CLOSED
        try:
            await self.cleanup()
        finally:
            self.timers.cancel_all()
            if self._channel_reader is not None:
                self._channel_reader.cancel()
                channelreader.forget(self.channel_name)
            detach = getattr(self.channel_layer, "detach", None)
            if detach is not None:
                detach(self.channel_name)

    async def cleanup(self) -> None:
        """Override: what to undo when the connection ends (called once, before the layer is left)."""
