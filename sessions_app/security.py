"""The WebSocket origin policy (protocol section 1)."""

from typing import Any
from urllib.parse import ParseResult, urlparse

from asgiref.sync import markcoroutinefunction
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings


class OptionalOriginValidator(OriginValidator):
    """Channels' ``OriginValidator``, except that a handshake without ``Origin`` is allowed.

    Browsers always send ``Origin``; scripts and native apps usually do not, and their identity
    comes from the token, never from cookies, so there is nothing for a forged request to borrow.
    A present ``Origin`` that is not allowed is refused with HTTP 403 before the upgrade.
    """

    _asgi_single_callable = True

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """As ``OriginValidator.__call__``, returning the application's (or the denier's) coroutine
        instead of awaiting it, so that no frame of this validator stays on the connection's
        stack (see sessions_app.routing)."""
        if scope["type"] != "websocket":

            async def refuse() -> None:
                raise ValueError("You cannot use OriginValidator on a non-WebSocket connection")

            return refuse()
        parsed_origin = None
        for header_name, header_value in scope.get("headers", []):
            if header_name == b"origin":
                try:
                    parsed_origin = urlparse(header_value.decode("latin1"))
                except UnicodeDecodeError:
                    pass
        if self.valid_origin(parsed_origin):
            return self.application(scope, receive, send)
        return WebsocketDenier()(scope, receive, send)

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        """True for no ``Origin`` header, else the allow-list decides."""
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def origin_validator(application: Any) -> OptionalOriginValidator:
    """Wrap ``application`` with the origin policy.

    Allowed: ``SESSIONS_ALLOWED_ORIGINS`` when set (Channels patterns: ``host``, ``.domain``,
    ``https://host:port`` or ``*``), else the hosts of ``ALLOWED_HOSTS`` on any scheme and port.
    """
    allowed = settings.SESSIONS_ALLOWED_ORIGINS or settings.ALLOWED_HOSTS
    return OptionalOriginValidator(application, list(allowed))
