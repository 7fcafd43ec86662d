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
which the connection is closed with 4008 ("too slow"). The departures and their measured gains:
docs/channels.md.
"""

import asyncio
import enum
import logging
import time
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Mapping
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from . import channelreader, metrics, protocol, sockets
from .conf import app_settings
from .timers import CLIENT_GONE, Timers

logger = logging.getLogger(__name__)

ABORT_GRACE = 1.0  # seconds between the 4008 close frame and dropping the TCP connection


class ConnectionState(enum.Enum):
    """Where a connection is in its life (starlette's ``WebSocketState`` has the same shape)."""

    CONNECTING = "connecting"  # the server has not sent websocket.connect yet
    OPEN = "open"  # frames flow
    CLOSING = "closing"  # the close is on its way; frames from the client are ignored
    CLOSED = "closed"  # cleaned up


Handler = Callable[[Any, dict[str, Any]], Coroutine[Any, Any, None]]
_methods: dict[tuple[type, str], Handler | None] = {}  # (class, type) -> its method, or None


class OrderedConsumer(AsyncJsonWebsocketConsumer):
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
                await _resume(coroutine, waiting_on)
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

    def write(self, text: str) -> None:
        """Send one text frame now, behind any frame still waiting for the server."""
        if self.state is ConnectionState.OPEN:
            self.frames_out += 1
            self.send_in_order({"type": "websocket.send", "text": text}, _size(text))

    def write_shared(self, text: str) -> None:
        """``write`` for a frame that many sockets of this process get alike (a push): on daphne,
        framed once for all of them (sockets.TwistedBuffer.send_shared; ``DAPHNE_PREPARED_PUSHES``),
        else as ``write``. Same order and send buffer bound as ``write``."""
        if self.state is not ConnectionState.OPEN:
            return
        sock = self._socket
        if self._outbox is not None or sock is None or not sock.send_shared(text):
            self.send_in_order({"type": "websocket.send", "text": text}, _size(text))
        elif sock.buffered() > app_settings.MAX_SEND_BUFFER:
            self._too_slow()

    def send_in_order(self, message: dict[str, Any], size: int = 0) -> None:
        """Hand an ASGI message to the server without waiting, in order; enforce the send buffer.

        daphne's send never waits (Twisted buffers the bytes): the message is written before this
        returns and no task is made. A server with backpressure may suspend the send: the rest of
        it then runs in a task, and messages meanwhile queue behind it.
        """
        if self._outbox is not None:
            self._outbox.append(message)
            self._queued += size
        else:
            sending = self.base_send(message)
            if not hasattr(sending, "send"):  # an awaitable that is not a coroutine: granian's future
                sending = _awaiting(sending)
            try:
                waiting_on = sending.send(None)
            except StopIteration:
                waiting_on = None
            except CLIENT_GONE:
                logger.debug("a frame to a disconnected client dropped", exc_info=True)
                return
            if waiting_on is not None:
                self._outbox = deque()
                self._queued = 0
                self.timers.start(self._flush(sending, waiting_on))
        if size and self._queued + (self._socket.buffered() if self._socket is not None else 0) > (
            app_settings.MAX_SEND_BUFFER
        ):
            self._too_slow()

    async def _flush(self, sending: Any, waiting_on: Any) -> None:
        try:
            await _resume(sending, waiting_on)
            while self._outbox:
                message = self._outbox.popleft()
                self._queued -= _size(message.get("text") or message.get("bytes") or b"")
                await self.base_send(message)
        except CLIENT_GONE:
            logger.debug("frames to a disconnected client dropped", exc_info=True)
        finally:
            self._outbox = None
            self._queued = 0

    def _too_slow(self) -> None:
        """More than ``SESSIONS_MAX_SEND_BUFFER`` bytes wait for this client: drop what is queued,
        send close 4008 behind what the server holds, and drop the TCP connection shortly after."""
        if self.state is not ConnectionState.OPEN:
            return
        limit = app_settings.MAX_SEND_BUFFER
        logger.info("closing %s: its client does not read (over %d bytes waiting)", self.channel_name, limit)
        metrics.send_buffer_closed()
        if self._outbox:
            self._outbox.clear()
            self._queued = 0
        self.state = ConnectionState.CLOSING
        self.timers.cancel_timer()
        self.close_code, self.close_reason = protocol.CLOSE_TOO_SLOW, "too_slow"
        self.send_in_order({"type": "websocket.close", "code": protocol.CLOSE_TOO_SLOW})
        if self._socket is not None:
            asyncio.get_running_loop().call_later(ABORT_GRACE, self._socket.abort)

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


def _size(frame: str | bytes) -> int:
    """A frame's payload in bytes: UTF-8 for text (``isascii`` is O(1) in CPython; only non-ASCII
    text is encoded to count it)."""
    if isinstance(frame, bytes) or frame.isascii():
        return len(frame)
    return len(frame.encode())


async def _awaiting(awaitable: Any) -> Any:
    """``awaitable`` as a coroutine. ASGI's ``send`` returns an awaitable, not always a coroutine:
    granian's is a future-like ``PyFutureAwaitable`` (``__await__`` and ``__next__``, no ``send``),
    which ``send_in_order`` could not start in place (the handshake failed with AttributeError and
    the client saw 1005 instead of the application's close code; issue 16)."""
    return await awaitable


@types.coroutine
def _resume(coroutine: Any, waiting_on: Any) -> Generator[Any, Any, Any]:
    """Run the rest of ``coroutine``, which already ran until it yielded ``waiting_on``.

    The second half of an eager start (what asyncio's eager tasks do from Python 3.12): a send or
    a handler runs in place until it first suspends, and a task awaits this for the rest. Each value
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
