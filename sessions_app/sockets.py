"""What the ASGI server holds for one WebSocket, and how to abort it.

To bound what the server buffers for a client that stops reading (SESSIONS_MAX_SEND_BUFFER),
``socket_buffer(send)`` finds the server's transport behind the ASGI ``send`` callable:

- daphne: ``daphne/server.py`` ``Server.create_application`` passes
  ``send=functools.partial(self.handle_reply, protocol)``, ``protocol`` a ``daphne.ws_protocol``
  ``WebSocketProtocol`` (autobahn). That send never waits: autobahn's ``sendData`` calls Twisted's
  ``FileDescriptor.write``, which appends each frame to the transport's buffer, without bound
  (daphne#170). Twisted's producer API is closed to us: daphne's ``HTTPChannel`` registered itself
  as the transport's producer (``twisted/web/http.py`` ``connectionMade``) and stays so after the
  upgrade, so ``registerProducer`` raises ``RuntimeError``.
- uvicorn, every ``--ws`` (``websockets``, ``websockets-sansio``, ``wsproto``; ``auto`` is
  ``websockets-sansio``): ``send`` is a bound method of the protocol (``run_asgi`` passes
  ``self.send``, or ``self.asgi_send``), whose ``.transport`` is the asyncio transport. Its send
  awaits while that buffer is over the high-water mark (64 KiB, asyncio's and uvloop's default and
  websockets' ``write_limit``; 512 KiB for their TLS transports), and none keeps frames of its own.
- Anything else (Channels' ``ApplicationCommunicator``, hypercorn, a middleware that wraps ``send``
  such as uvicorn's ``--log-level trace`` logger or Channels' ``SessionMiddleware``): None.

Call both methods on the server's event loop, where the app runs (daphne runs Twisted on asyncio's).
"""

import functools
import logging
import socket
import struct
import sys
import typing
from collections.abc import Callable
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


class SocketBuffer(typing.Protocol):
    """The server's outgoing buffer for one WebSocket."""

    def buffered(self) -> int:
        """Bytes the server holds in memory for this socket, written by the app and not yet dropped
        (what is left to send, and on daphne the sent part of a buffer not yet freed)."""
        ...

    def abort(self) -> None:
        """Drop the TCP connection now, discarding what is buffered.

        The server then delivers ``websocket.disconnect`` to the app as usual (code 1006 on daphne,
        1005 or 1006 on uvicorn).
        """
        ...

    def close(self, code: int) -> bool:
        """Send the close frame ``code`` if the server would refuse it from the application's
        ``websocket.close`` (True), else nothing (False: send ``websocket.close``)."""
        ...

    def send_shared(self, text: str) -> bool:
        """Send ``text``, a frame many sockets of this process get alike (a push), framed once for
        all of them (True), else nothing (False: send ``websocket.send``)."""
        ...


class _Prepared:
    """The last frame autobahn framed for ``send_shared``: ``(text, PreparedMessage)``. A push
    goes to every member of a process in one loop, each with the same ``str`` object, so one entry
    frames it once (and holds at most one frame's bytes)."""

    last: tuple[str, Any] | None = None


class TwistedBuffer:
    """daphne: the bytes in the Twisted TCP transport under the WebSocket protocol."""

    __slots__ = ("_aborted", "_descriptor", "_prepared", "_protocol", "_transport")

    def __init__(self, protocol: Any, transport: Any, descriptor: Any, prepared: bool = True) -> None:
        self._protocol = protocol
        self._transport = transport  # the TCP transport, or the TLS layer over it
        self._descriptor = descriptor  # the twisted.internet.abstract.FileDescriptor at the bottom
        self._aborted = False
        self._prepared = prepared  # DAPHNE_PREPARED_PUSHES

    def send_shared(self, text: str) -> bool:
        """autobahn's ``prepareMessage`` / ``sendPreparedMessage`` (``autobahn/websocket/protocol.py``):
        the frame of ``text`` is built once (UTF-8 encoding, header) and each socket's send is one
        ``sendData`` of those bytes, instead of daphne's ``handle_reply`` -> ``serverSend`` ->
        ``sendMessage`` -> ``sendFrame`` per socket. What daphne checks first is checked here: a
        socket that is not open gets nothing (daphne drops a send to a disconnected socket;
        autobahn's ``sendData`` does not check). With permessage-deflate negotiated,
        ``sendPreparedMessage`` compresses per socket (``sendMessage``), as daphne would.
        False (not sent) when ``DAPHNE_PREPARED_PUSHES`` is off: the caller sends it daphne's way.
        """
        if not self._prepared:
            return False
        protocol = self._protocol
        if self._aborted or protocol.state != protocol.STATE_OPEN:
            return True  # dropped, as daphne drops it
        last = _Prepared.last
        if last is None or last[0] is not text:
            last = _Prepared.last = (text, protocol.factory.prepareMessage(text.encode(), False))
        protocol.sendPreparedMessage(last[1])
        return True

    def buffered(self) -> int:
        """``len(dataBuffer) + _tempDataLen``: the memory of ``abstract.FileDescriptor``'s two buffers,
        plus autobahn's ``send_queue`` (chopped or synchronous writes only, which daphne does not
        make). 0 once aborted or disconnected: nothing left is ever sent then.

        Not ``len(dataBuffer) - offset`` (what is left to send): ``doWrite`` keeps the whole
        ``dataBuffer``, the part already sent included, until less than ``SEND_LIMIT`` (128 KiB) of
        it is left, so a client that stops reading in the middle of it costs up to twice what is
        left to send (measured: 12 stalled clients cost daphne +28 MiB instead of +16 MiB on a loaded
        machine, tests/test_send_buffer.py). On another machine (2026-12-03) the peak was still about
        twice the bound per stalled client (+26.7 MiB for 12 at 1 MiB, +14.8 MiB at 512 KiB) with
        this count: the test allows for that; the second copy is not found yet.

        Under TLS, ciphertext (a few bytes per 16 KiB record more); the TLS layer's own buffers are
        not counted: ``BufferingTLSTransport``'s aggregator (under 64,000 bytes, flushed on the next
        reactor turn) and ``_appSendBuffer`` (used during a handshake).
        """
        descriptor = self._descriptor
        if self._aborted or descriptor.disconnected:
            return 0
        size = len(descriptor.dataBuffer) + descriptor._tempDataLen
        queue = self._protocol.send_queue
        if queue:
            size += sum(len(item[0]) for item in queue)
        return size

    def close(self, code: int) -> bool:
        """autobahn's ``sendClose`` (daphne's ``serverClose``) refuses every code but 1000 and
        3000-4999, so 1012 (service restart) and the other codes of the 1000 range are sent as
        ``sendClose`` sends after its check: ``sendCloseFrame(code, isReply=False)``, which writes
        the frame and moves the protocol to its closing state (the client's answering close, or
        autobahn's close handshake timeout, ends it and daphne delivers ``websocket.disconnect``).
        """
        protocol = self._protocol
        if code == 1000 or 3000 <= code <= 4999 or self._aborted or protocol.state == protocol.STATE_CONNECTING:
            return False  # daphne's own close (a handshake not yet accepted: HTTP 403)
        if protocol.state == protocol.STATE_OPEN:
            protocol.sendCloseFrame(code=code, isReply=False)
        return True

    def abort(self) -> None:
        """``abortConnection`` (``twisted/internet/tcp.py``; under TLS ``TLSMemoryBIOProtocol``'s, which
        calls it): stops reading and writing; on the next reactor turn closes the socket with
        ``SO_LINGER`` 0 (the client gets a reset) and calls ``connectionLost``, whence autobahn calls
        daphne's ``onClose``, which delivers ``websocket.disconnect`` 1006.
        """
        self._aborted = True
        self._transport.abortConnection()
        # daphne's HTTPChannel, WebRequest and WebSocketProtocol hold the transport in reference
        # cycles, so it lives until the garbage collector's next full collection; free its buffers
        # now (abortConnection made doWrite a no-op: nothing reads them again).
        descriptor = self._descriptor
        descriptor.dataBuffer, descriptor.offset, descriptor._tempDataBuffer, descriptor._tempDataLen = b"", 0, [], 0


class AsyncioBuffer:
    """uvicorn: the asyncio transport under the WebSocket protocol (asyncio's, uvloop's, or TLS)."""

    __slots__ = ("_aborted", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._aborted = False

    def buffered(self) -> int:
        """``WriteTransport.get_write_buffer_size()``; 0 once aborted (uvloop counts its discarded
        buffer until the socket closes). Under TLS, the TLS layer's buffer: the TCP transport below
        it holds up to its own high-water mark more.
        """
        return 0 if self._aborted else self._transport.get_write_buffer_size()

    def close(self, code: int) -> bool:
        """False: uvicorn sends every valid close code the application asks for."""
        return False

    def send_shared(self, text: str) -> bool:
        """False: uvicorn's ``websockets`` protocols frame each send themselves (no prepared frames)."""
        return False

    def abort(self) -> None:
        """``WriteTransport.abort()``: drops the buffer, closes the socket, then calls the protocol's
        ``connection_lost``, which queues ``websocket.disconnect`` and wakes a send awaiting the buffer.

        ``SO_LINGER`` 0 first, as Twisted's ``abortConnection`` sets: else the kernel would go on
        delivering its own send buffer (megabytes on loopback) before a FIN; now the client gets a
        reset and the kernel frees it.
        """
        self._aborted = True
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                logger.debug("SO_LINGER not set on %r", sock, exc_info=True)
        self._transport.abort()


def socket_buffer(send: Callable[..., Any]) -> SocketBuffer | None:
    """The server's buffer behind an ASGI ``send`` callable, or None when the server is not one we know.

    Looks the classes up in ``sys.modules`` only: the server running us has imported them, and the
    module works where daphne, Twisted or uvicorn is not installed. Call it once per connection.
    """
    if isinstance(send, functools.partial):
        return _daphne_buffer(send)
    owner = getattr(send, "__self__", None)
    if owner is not None and type(owner).__module__.startswith("uvicorn.protocols.websockets."):
        transport = getattr(owner, "transport", None)
        if hasattr(transport, "get_write_buffer_size") and hasattr(transport, "abort"):
            return AsyncioBuffer(transport)
    return None


def _daphne_buffer(send: functools.partial) -> SocketBuffer | None:
    """The ``TwistedBuffer`` behind daphne's ``partial(Server.handle_reply, protocol)``, else None."""
    daphne_server = sys.modules.get("daphne.server")
    daphne_ws = sys.modules.get("daphne.ws_protocol")
    abstract = sys.modules.get("twisted.internet.abstract")
    if daphne_server is None or daphne_ws is None or abstract is None or len(send.args) != 1:
        return None
    if not isinstance(getattr(send.func, "__self__", None), daphne_server.Server):
        return None
    protocol = send.args[0]
    if not isinstance(protocol, daphne_ws.WebSocketProtocol):
        return None
    # daphne's HTTP protocol hands its transport to the WebSocket protocol on upgrade
    # (daphne/http_protocol.py): the TCP transport, or with TLS the TLSMemoryBIOProtocol over it.
    transport = descriptor = protocol.transport
    for _ in range(4):
        if isinstance(descriptor, abstract.FileDescriptor):
            prepared = getattr(settings, "DAPHNE_PREPARED_PUSHES", True) if settings.configured else True
            return TwistedBuffer(protocol, transport, descriptor, prepared)
        descriptor = getattr(descriptor, "transport", None)
    logger.debug("daphne transport %r has no Twisted file descriptor under it", transport)
    return None
