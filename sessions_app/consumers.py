"""The socket protocol: handshake, decode, dispatch, reply (docs/protocol.md).

Domain work lives in services and selectors, reached through ``handlers.call``; this module only
speaks the protocol. Every frame a client sends, however wrong, gets one reply or one error frame,
and only the errors of protocol section 6 that close the socket close it. Reads, writes and the
channel layer's messages are sessions_app.transport's; groups are sessions_app.groups', joined with
the channel layer's own ``group_add``, and pushes arrive as ``session.push`` messages (``session_push``).
"""

import datetime
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import markcoroutinefunction
from channels.exceptions import StopConsumer
from rest_framework_simplejwt.tokens import Token

from . import auth, drain, events, limits, metrics, oplog, presence, process, protocol
from .conf import app_settings
from .groups import GroupMembership
from .handlers import call
from .protocol import ProtocolError
from .registry import MESSAGE_HANDLERS, REGISTRY
from .transport import ConnectionState, OrderedConsumer

logger = logging.getLogger(__name__)


class SessionConsumer(GroupMembership, OrderedConsumer):
    """One WebSocket connection: one user, at most one joined session at a time.

    Public attributes, for state handlers (``registry.Connection``): ``user`` (``{"id",
    "username"}`` once authenticated), ``session_id`` / ``role`` / ``session_version`` of the joined
    session (None, None, 0 when none), ``channel_name`` and ``channel_layer`` (Channels' own), and
    ``close_after_reply`` (a close code to send after the current reply).
    """

    # Per-connection state. Class-level defaults keep an idle connection's instance dict small
    # (memory per connection is a requirement, see bench/); an instance sets what it changes.
    user: dict[str, Any] | None = None
    session_id: Any = None
    role: str | None = None
    session_version = 0
    close_after_reply: int | None = None
    _expires_at: datetime.datetime | None = None  # the access token's expiry, once authenticated
    _rate: limits.RateLimit | None = None
    message_handlers = MESSAGE_HANDLERS

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

    # --- client frames -------------------------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Called when the client opens the socket: accept, then wait for the token frame.

        The origin is already checked (project.asgi). Accepting before authentication lets a
        browser see the error frame and close code, which a refused handshake hides (1006).
        """
        await self.accept()
        process.ensure_running()
        drain.register(self)
        if drain.draining():  # accepted as the listening socket closed: go to another process
            await self.close(protocol.CLOSE_SERVICE_RESTART)
            return
        self.timers.after(app_settings.AUTH_TIMEOUT, self._auth_deadline)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Called for each frame from the client: one reply or error frame per frame."""
        if self.state is not ConnectionState.OPEN:
            return
        started = metrics.clock()
        text = message.get("text")
        if self.user is None:
            await self._handshake(text, message.get("bytes") or b"")
            return
        rate = self._rate
        if rate is None:
            rate = self._rate = limits.RateLimit()
        request_id = request_state = None
        try:
            if text is None or text == "":
                limits.check_size(message.get("bytes") or b"")
                rate.check()
                raise ProtocolError(protocol.UNSUPPORTED_FRAME, "Only non-empty UTF-8 text frames are accepted.")
            limits.check_size(text)
            # Decode before the rate check, so that a rate_limited error echoes the request's id
            # and state (protocol section 3); the size check above bounds the work.
            try:
                decoded = protocol.decode(text)
            except protocol.TooDeep as exc:
                # Echo what is valid of the id and state, as for any other invalid_message.
                request_id, request_state = protocol.echo_fields(exc.value)
                rate.check()
                raise ProtocolError(protocol.INVALID_MESSAGE, f"The request is {exc}.") from None
            except protocol.NumberTooLong as exc:
                rate.check()
                raise ProtocolError(
                    protocol.INVALID_JSON, f"The frame holds a number too long to read: {exc}."
                ) from None
            except ValueError as exc:
                rate.check()
                raise ProtocolError(protocol.INVALID_JSON, f"The frame is not valid JSON: {exc}") from None
            try:
                rate.check()
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
            if not isinstance(result, dict):  # a forgotten return: the app's bug, not the client's
                raise TypeError(f"state {state_name!r} returned {type(result).__name__}, not a dict of reply data")
            try:
                text = protocol.encode(protocol.reply(state_name, result, request_id))
            except (TypeError, ValueError) as exc:  # orjson's JSONEncodeError is a TypeError
                raise RuntimeError(f"state {state_name!r} returned a reply that is not JSON") from exc
        except ProtocolError as exc:
            await self.fail(exc, request_id=request_id, request_state=request_state)
            return
        except Exception:  # noqa: BLE001 - logged with its traceback by sessions_app.oplog
            oplog.server_error(self, request_state)
            await self.fail(
                ProtocolError(protocol.SERVER_ERROR, "The server failed to handle this request."),
                request_id=request_id,
                request_state=request_state,
            )
            return
        finally:
            metrics.answered(request_state, started)
        self.write(text)
        if self.close_after_reply is not None:
            await self.close(self.close_after_reply)

    async def _handshake(self, text: str | None, message_bytes: bytes) -> None:
        """The first frame: ``{"token": "<access token>"}``; anything else fails with 4401."""
        self.timers.cancel_timer()
        try:
            limits.check_size(text if text is not None else message_bytes)
            try:
                first = protocol.decode(text) if text else None
            except ValueError:
                first = None
            raw = first.get("token") if type(first) is dict else None
            token = auth.validate_access_token(raw)
            user = await call(
                presence.connection_open, turn=auth.token_user_id(token), token=token, channel_name=self.channel_name
            )
            self.user = user
            process.register(self)
            expires_at = self.schedule_token_expiry(token)
        except ProtocolError as exc:
            await self.fail(exc)
            return
        except Exception:  # noqa: BLE001 - logged with its traceback by sessions_app.oplog
            oplog.server_error(self, "handshake")
            await self.fail(ProtocolError(protocol.UNAVAILABLE, "The server cannot authenticate now; retry later."))
            return
        data = {"user": user, "protocol": protocol.PROTOCOL_VERSION, "token_expires_at": protocol.utc_iso(expires_at)}
        self.send_frame({"state": "initialised", "data": data})

    # --- replies, errors and closing ---------------------------------------------------------------

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame (protocol.encode: UUIDs, datetimes and decimals as strings).

        Nothing is sent once the socket is closing (a reply finishing after a timer's close).
        """
        self.write(protocol.encode(frame))

    async def fail(self, exc: ProtocolError, *, request_id: Any = None, request_state: str | None = None) -> None:
        """Send ``exc`` as an error frame; close with the code protocol section 6 gives it, if any."""
        if self.state is not ConnectionState.OPEN:
            return
        metrics.error_sent(exc.code, authenticated=self.user is not None)
        oplog.error_sent(self, exc.code, request_state)
        if exc.close_code is not None:
            self.close_reason = exc.code
        frame = protocol.error(
            exc.code, exc.message, request_id=request_id, request_state=request_state, errors=exc.errors, data=exc.data
        )
        self.send_frame(frame)
        if exc.close_code is not None:
            await self.close(exc.close_code)

    # --- timers: auth deadline and token expiry ----------------------------------------------------

    def schedule_token_expiry(self, token: Token) -> datetime.datetime:
        """(Re)arm the ``token_expiring`` push, then the ``token_expired`` close; returns the expiry."""
        self._expires_at = expires_at = auth.token_expiry(token)
        remaining = expires_at.timestamp() - time.time()
        self.timers.after(remaining - app_settings.TOKEN_EXPIRY_WARNING, self._token_expiring)
        return expires_at

    async def _auth_deadline(self) -> None:
        if self.user is None:
            await self.fail(ProtocolError(protocol.AUTH_TIMEOUT, "No token was sent in time."))

    async def _token_expiring(self) -> None:
        expires_at = self._expires_at
        if self.state is not ConnectionState.OPEN or expires_at is None:
            return
        self.send_frame({"state": "token_expiring", "data": {"token_expires_at": protocol.utc_iso(expires_at)}})
        self.timers.after(expires_at.timestamp() - time.time(), self._token_expired)

    async def _token_expired(self) -> None:
        await self.fail(ProtocolError(protocol.TOKEN_EXPIRED, "The access token expired; authenticate again."))

    # --- channel-layer messages ----------------------------------------------------------------------

    async def session_push(self, event: dict[str, Any]) -> None:
        """Called for a ``session.push`` message (events.group_push) to a group this connection is in.

        Dropped when this connection caused it (``exclude``), has left the group, or already has
        its ``version`` of the joined session (from its join snapshot or a reply).
        """
        groups = self._group_state
        if event["exclude"] == self.channel_name or groups is None:
            return
        if groups.accepts(event["group"], event.get("version", 0)):
            self.write_shared(event["text"])

    def deliver(self, message: dict[str, Any]) -> None:
        """As ``OrderedConsumer.deliver``; a ``socket.close`` (events.socket_close) is never held."""
        if message["type"] != events.SOCKET_CLOSE:
            return super().deliver(message)
        self.end(message.get("reason") or protocol.DISCONNECTED)

    def end(self, reason: str) -> None:
        """End this socket (not_authenticated with ``data.reason``, protocol.END_REASONS; 4401) in
        a task of its own: the caller (a layer message, the heartbeat) waits for no client."""
        text = protocol.END_REASONS.get(reason, "The server closed this connection.")
        self.timers.start(self.fail(ProtocolError(protocol.NOT_AUTHENTICATED, text, data={"reason": reason})))

    # --- disconnect --------------------------------------------------------------------------------

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Called when the socket closes for any reason (client, server, dropped TCP)."""
        raise StopConsumer()

    async def cleanup(self) -> None:
        """Called once when the connection ends: its Connection row, presence, its groups; then a
        drain waiting for it is told (sessions_app.drain)."""
        try:
            await self._cleanup()
        finally:
            drain.unregister(self)
            oplog.connection_ended(self)

    async def _cleanup(self) -> None:
        if self.user is not None:
            process.unregister(self)
            try:
                close = presence.connection_close
                await self.publish(
                    await call(close, channel_name=self.channel_name, user=self.user, session_id=self.session_id)
                )
            except ProtocolError:
                logger.warning("could not remove connection %s; its process heartbeat will", self.channel_name)
        groups = self._group_state
        if groups is not None and not hasattr(self.channel_layer, "detach"):
            await groups.discard_all()  # FanoutChannelLayer forgets them with the channel
