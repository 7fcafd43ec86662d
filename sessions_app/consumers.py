"""The socket protocol: handshake, decode, dispatch, reply, groups (docs/protocol.md).

Domain work lives in services and selectors, reached through ``handlers.call``; this module only
speaks the protocol. Every frame a client sends, however wrong, gets one reply or one error frame,
and only the errors of protocol section 6 that close the socket close it.
"""

import asyncio
import datetime
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.sync import markcoroutinefunction
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.signals import setting_changed
from rest_framework_simplejwt.tokens import Token

from . import auth, fanout, process, protocol, services
from .groups import SessionGroupsMixin
from .handlers import call
from .protocol import ProtocolError
from .registry import REGISTRY

logger = logging.getLogger(__name__)


class _FrameLimits:
    """The settings read for every frame, copied once from Django's settings and again whenever
    they change (``setting_changed``: override_settings in tests). Each ``settings.X`` goes
    through ``LazyObject.__getattribute__``; three per frame were a measurable part of a ping."""

    max_message_bytes: int
    rate_limit: float
    rate_burst: int

    def load(self, **_: Any) -> None:
        self.max_message_bytes = settings.SESSIONS_MAX_MESSAGE_BYTES
        self.rate_limit = settings.SESSIONS_RATE_LIMIT
        self.rate_burst = settings.SESSIONS_RATE_BURST


_limits = _FrameLimits()
_limits.load()
setting_changed.connect(_limits.load)


class SessionConsumer(SessionGroupsMixin, AsyncJsonWebsocketConsumer):
    """One WebSocket connection: one user, at most one joined session at a time.

    Public attributes, for state handlers: ``user`` (``{"id", "username"}`` once authenticated),
    ``session_id`` / ``role`` / ``session_version`` of the joined session (None, None, 0 when none),
    ``channel_name`` (the connection's identity: nothing reads it from the channel layer, see
    sessions_app.groups), and ``close_after_reply`` (a close code to send after the current reply).
    """

    # Per-connection state. Class-level defaults keep an idle connection's instance dict small
    # (memory per connection is a requirement, see bench/); an instance sets what it changes.
    user: dict[str, Any] | None = None
    session_id: Any = None
    role: str | None = None
    session_version = 0
    close_after_reply: int | None = None
    closing = False
    _session_group = ""
    _groups: tuple[str, ...] = ()  # channel-layer groups joined (at most the session's, briefly two)
    _timer: asyncio.TimerHandle | None = None
    _expires_at: datetime.datetime | None = None  # the access token's expiry, once authenticated
    _tasks: tuple[asyncio.Task[None], ...] = ()
    _allowance: float | None = None  # rate-limit bucket; None: full
    _checked_at = 0.0
    _strikes = 0
    _cleaned_up = False
    _process_channel: fanout.ProcessChannel | None = None  # set on connect
    _busy = False  # a frame is being handled: pushes are held
    _held: list[dict[str, Any]] | None = None  # pushes held while busy
    _outbox: deque[dict[str, Any]] | None = None  # messages waiting behind a send the transport made wait

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Callable[..., Any]:
        """As Channels' ``as_asgi``: an ASGI application making one consumer per connection, which
        returns the consumer's coroutine instead of awaiting it (a tail call, sessions_app.routing)."""

        @markcoroutinefunction
        def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
            return cls(**initkwargs)(scope, receive, send)

        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        app._asgi_single_callable = True  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        return app

    # --- dispatch ------------------------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route an ASGI or channel-layer message through an explicit table (never ``getattr``).

        Unlike Channels' ``AsyncConsumer.dispatch``, this does not hop to the database thread to
        close old connections before every message (Channels >= 4.2): only handlers that touch the
        database do so, through ``database_sync_to_async``, which closes them around each call.
        """
        handler = _DISPATCH.get(message.get("type"))
        if handler is None:
            logger.warning("ignored a message of unknown type %r", message.get("type"))
            return
        await handler(self, message)

    # --- client frames -------------------------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Called when the client opens the socket: accept, then wait for the token frame.

        The origin is already checked (project.asgi). Accepting before authentication lets a
        browser see the error frame and close code, which a refused handshake hides (1006).
        """
        await self.accept()
        self._process_channel = process.ensure_running()
        self._after(settings.SESSIONS_AUTH_TIMEOUT, self._auth_deadline)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Called for each frame from the client: one reply or error frame per frame."""
        if self.closing:
            return
        text = message.get("text")
        if self.user is None:
            await self._handshake(text, message.get("bytes") or b"")
            return
        request_id = request_state = None
        try:
            if text is None or text == "":
                self._check_size(message.get("bytes") or b"")
                self._check_rate()
                raise ProtocolError(protocol.UNSUPPORTED_FRAME, "Only non-empty UTF-8 text frames are accepted.")
            self._check_size(text)
            # Decode before the rate check, so that a rate_limited error echoes the request's id
            # and state (protocol section 3); the size check above bounds the work.
            try:
                decoded = protocol.decode(text)
            except protocol.TooDeep as exc:
                self._check_rate()
                raise ProtocolError(protocol.INVALID_MESSAGE, f"The request is {exc}.") from None
            except ValueError as exc:
                self._check_rate()
                raise ProtocolError(protocol.INVALID_JSON, f"The frame is not valid JSON: {exc}") from None
            try:
                self._check_rate()
                state_name, data, request_id = protocol.parse_envelope(decoded)
            except ProtocolError:
                # rate_limited and invalid_message echo what is valid of the request's id and state.
                request_id, request_state = protocol.echo_fields(decoded)
                raise
            request_state = state_name
            entry = REGISTRY.get(state_name)
            if entry is None:
                raise ProtocolError(protocol.UNKNOWN_STATE, f"Unknown state {state_name!r}.")
            if entry.needs_session and self.session_id is None:
                raise ProtocolError(protocol.NOT_JOINED, "Join or create a session first.")
            result = await entry.handler(self, entry.validate(data))
        except ProtocolError as exc:
            await self.fail(exc, request_id=request_id, request_state=request_state)
            return
        except Exception:
            logger.exception("state %r failed", request_state)
            await self.fail(
                ProtocolError(protocol.SERVER_ERROR, "The server failed to handle this request."),
                request_id=request_id,
                request_state=request_state,
            )
            return
        await self.send_frame(protocol.reply(state_name, result, request_id))
        if self.close_after_reply is not None:
            await self.shut(self.close_after_reply)

    async def _handshake(self, text: str | None, message_bytes: bytes) -> None:
        """The first frame: ``{"token": "<access token>"}``; anything else fails with 4401."""
        self._cancel_timers()
        try:
            self._check_size(text if text is not None else message_bytes)
            try:
                first = protocol.decode(text) if text else None
            except ValueError:
                first = None
            raw = first.get("token") if type(first) is dict else None
            token = auth.validate_access_token(raw)
            user = await call(services.connection_open, token=token, channel_name=self.channel_name)
            self.user = user
            process.register(self)
            expires_at = self.schedule_token_expiry(token)
        except ProtocolError as exc:
            await self.fail(exc)
            return
        except Exception:
            logger.exception("handshake failed")
            await self.fail(ProtocolError(protocol.UNAVAILABLE, "The server cannot authenticate now; retry later."))
            return
        data = {"user": user, "protocol": protocol.PROTOCOL_VERSION, "token_expires_at": protocol.utc_iso(expires_at)}
        await self.send_frame({"state": "initialised", "data": data})

    def _check_size(self, frame: str | bytes) -> None:
        limit = _limits.max_message_bytes
        # A str of n characters encodes to n..4n bytes: encode only when it can matter.
        if len(frame) > limit // 4 and len(frame if isinstance(frame, bytes) else frame.encode()) > limit:
            raise ProtocolError(protocol.MESSAGE_TOO_LARGE, f"Frames are limited to {limit} bytes.")

    def _check_rate(self) -> None:
        """Token bucket: ``SESSIONS_RATE_LIMIT`` frames a second, bursts of ``SESSIONS_RATE_BURST``.

        A refused frame gets ``rate_limited``; after ``SESSIONS_RATE_BURST`` refusals in a row the
        client is taken to be flooding and the socket closes with 4429.
        """
        now = time.monotonic()
        burst = _limits.rate_burst
        if self._allowance is None:
            allowance = float(burst)
        else:
            allowance = min(burst, self._allowance + (now - self._checked_at) * _limits.rate_limit)
        self._allowance = allowance
        self._checked_at = now
        if self._allowance >= 1:
            self._allowance -= 1
            self._strikes = 0
            return
        self._strikes += 1
        flooding = self._strikes >= burst
        raise ProtocolError(
            protocol.RATE_LIMITED,
            "Too many messages; slow down.",
            close_code=protocol.CLOSE_RATE_LIMITED if flooding else None,
        )

    # --- replies, errors and closing ---------------------------------------------------------------

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame (protocol.encode: UUIDs, datetimes and decimals as strings).

        Nothing is sent once the socket is closing (a reply finishing after a timer's close).
        """
        if not self.closing:
            self.write(protocol.encode(frame))

    async def fail(self, exc: ProtocolError, *, request_id: Any = None, request_state: str | None = None) -> None:
        """Send ``exc`` as an error frame; close with the code protocol section 6 gives it, if any."""
        if self.closing:
            return
        frame = protocol.error(
            exc.code, exc.message, request_id=request_id, request_state=request_state, errors=exc.errors, data=exc.data
        )
        await self.send_frame(frame)
        if exc.close_code is not None:
            await self.shut(exc.close_code)

    async def shut(self, code: int) -> None:
        """Close the socket with ``code``; later frames from the client are ignored."""
        if not self.closing:
            self.closing = True
            self._cancel_timers()
            self.send_in_order({"type": "websocket.close", "code": code})  # after the frames before it

    # --- timers: auth deadline and token expiry ----------------------------------------------------
    # One timer at a time (the auth deadline, then token_expiring, then token_expired): a
    # TimerHandle costs no task while it waits, and one instead of several keeps idle sockets small.

    def _after(self, delay: float, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``action`` in ``delay`` seconds, replacing the pending timer."""
        self._cancel_timers()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._start, action)

    def _start(self, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._timer = None
        task = asyncio.ensure_future(action())
        self._tasks = (*self._tasks, task)  # a strong reference while it runs
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks = tuple(t for t in self._tasks if t is not task)
        if task.cancelled() or task.exception() is None:
            return
        if isinstance(task.exception(), OSError):
            # uvicorn's ClientDisconnected: the client left while a close or frame was on its way.
            logger.debug("a connection task ended with its client gone", exc_info=task.exception())
        else:
            logger.error("a connection task failed", exc_info=task.exception())

    def _cancel_timers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def schedule_token_expiry(self, token: Token) -> datetime.datetime:
        """(Re)arm the ``token_expiring`` push, then the ``token_expired`` close; returns the expiry."""
        self._expires_at = expires_at = auth.token_expiry(token)
        remaining = expires_at.timestamp() - time.time()
        self._after(remaining - settings.SESSIONS_TOKEN_EXPIRY_WARNING, self._token_expiring)
        return expires_at

    async def _auth_deadline(self) -> None:
        if self.user is None:
            await self.fail(ProtocolError(protocol.AUTH_TIMEOUT, "No token was sent in time."))

    async def _token_expiring(self) -> None:
        expires_at = self._expires_at
        if self.closing or expires_at is None:
            return
        await self.send_frame({"state": "token_expiring", "data": {"token_expires_at": protocol.utc_iso(expires_at)}})
        self._after(expires_at.timestamp() - time.time(), self._token_expired)

    async def _token_expired(self) -> None:
        await self.fail(ProtocolError(protocol.TOKEN_EXPIRED, "The access token expired; authenticate again."))

    # --- channel-layer messages ----------------------------------------------------------------------

    def user_deactivated(self) -> None:
        """Called by this process when the user is deactivated or deleted: send not_authenticated
        and close 4401, in a task of this connection's own (the caller, the process channel's
        reader or the heartbeat, must not wait for a client whose socket is backed up)."""
        self._start(self._close_deactivated)

    async def _close_deactivated(self) -> None:
        await self.fail(ProtocolError(protocol.NOT_AUTHENTICATED, "This account is no longer active."))

    # --- disconnect --------------------------------------------------------------------------------

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Called when the socket closes for any reason (client, server, dropped TCP): clean up once."""
        self.closing = True
        self._cancel_timers()
        if not self._cleaned_up:
            self._cleaned_up = True
            await self._cleanup()
        raise StopConsumer()

    async def _cleanup(self) -> None:
        if self.user is not None:
            process.unregister(self)
            try:
                close = services.connection_close
                await self.publish(
                    await call(close, channel_name=self.channel_name, user=self.user, session_id=self.session_id)
                )
            except ProtocolError:
                logger.warning("could not remove connection %s; its process heartbeat will", self.channel_name)
        for group in self._groups:
            await self.unsubscribe_group(group)
        for task in self._tasks:
            task.cancel()


_DISPATCH: dict[str, Callable[[SessionConsumer, dict[str, Any]], Coroutine[Any, Any, None]]] = {
    "websocket.connect": SessionConsumer.websocket_connect,
    "websocket.receive": SessionConsumer.websocket_receive,
    "websocket.disconnect": SessionConsumer.websocket_disconnect,
}
