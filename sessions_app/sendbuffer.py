"""The send side of a connection (sessions_app/transport.py's OrderedConsumer inherits it):
frames written in order without waiting, and the bound on what a client that does not read makes
the server hold (``SESSIONS_MAX_SEND_BUFFER`` bytes; past it close 4008, "too slow", and the TCP
connection dropped ``ABORT_GRACE`` seconds later). Also the eager start of a coroutine that
``send_in_order`` and the transport's dispatch share (``resume``).
"""

import asyncio
import enum
import logging
import types
from collections import deque
from collections.abc import Generator
from typing import Any

from . import metrics, protocol
from .conf import app_settings
from .timers import CLIENT_GONE

logger = logging.getLogger("sessions_app.transport")

ABORT_GRACE = 1.0  # seconds between the 4008 close frame and dropping the TCP connection


class ConnectionState(enum.Enum):
    """Where a connection is in its life (starlette's ``WebSocketState`` has the same shape)."""

    CONNECTING = "connecting"  # the server has not sent websocket.connect yet
    OPEN = "open"  # frames flow
    CLOSING = "closing"  # the close is on its way; frames from the client are ignored
    CLOSED = "closed"  # cleaned up


class SendBuffer:
    """The write methods of OrderedConsumer. Uses its ``state``, ``base_send``, ``timers``,
    ``channel_name``, ``frames_out``, ``close_code``/``close_reason``, and the send-side fields
    ``_outbox`` (a deque while the server makes a send wait, else None), ``_queued`` (bytes in
    it) and ``_socket`` (sockets.py's view of the server's own buffer, or None)."""

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
            await resume(sending, waiting_on)
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
def resume(coroutine: Any, waiting_on: Any) -> Generator[Any, Any, Any]:
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
