"""The WebSocket origin policy (protocol section 1), and DEBUG for loopback clients only."""

import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import ParseResult

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils.decorators import sync_and_async_middleware

from .conf import app_settings


class OptionalOriginValidator(OriginValidator):
    """Channels' ``OriginValidator``, except that a handshake without ``Origin`` is allowed.

    Browsers always send ``Origin``; scripts and native apps usually do not, and their identity
    comes from the token, never from cookies, so there is nothing for a forged request to borrow.
    A present ``Origin`` that is not allowed is refused with HTTP 403 before the upgrade.

    Only ``valid_origin`` is overridden; Channels' ``__call__`` parses the header and awaits the
    application, so its frame stays on every connection's stack (~0.7 KiB per idle connection,
    tracemalloc; the routers of sessions_app.routing avoid theirs).
    """

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        """True for no ``Origin`` header, else the allow-list decides."""
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def origin_validator(application: Any) -> OptionalOriginValidator:
    """Wrap ``application`` with the origin policy (and, with ``DEBUG`` on, ``DebugLoopbackOnly``).

    Allowed: ``SESSIONS_ALLOWED_ORIGINS`` when set (Channels patterns: ``host``, ``.domain``,
    ``https://host:port`` or ``*``), else the hosts of ``ALLOWED_HOSTS`` on any scheme and port.
    """
    allowed = app_settings.ALLOWED_ORIGINS or settings.ALLOWED_HOSTS
    return OptionalOriginValidator(DebugLoopbackOnly(application), list(allowed))


# --- DEBUG for loopback clients only ----------------------------------------------------------------

# Headers a proxy adds for the client it forwards: a request carrying one comes from elsewhere,
# whatever its connection's address.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")
DEBUG_REFUSAL = (
    "This server runs with DJANGO_DEBUG=1, which answers loopback clients only: Django's debug "
    "pages show its settings. To serve other machines, run it with DJANGO_DEBUG=0 (README, "
    '"Settings").\n'
)


def is_loopback_address(host: Any) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1, or ::ffff:127.0.0.1); False for anything
    else, a name or None included."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_loopback_client(request: HttpRequest) -> bool:
    """True when the request's connection comes from a loopback address and carries no proxy's
    forwarding header. A request without an address (a Unix socket, which a proxy may front) is not."""
    if any(header in request.META for header in FORWARDING_HEADERS):
        return False
    return is_loopback_address(request.META.get("REMOTE_ADDR", ""))


class DebugLoopbackOnly:
    """ASGI wrapper of the WebSocket application: with ``DEBUG`` on, a handshake from anywhere but
    loopback, or one a proxy forwarded, is refused with HTTP 403 (Channels' ``WebsocketDenier``),
    as ``debug_loopback_only`` refuses HTTP requests: ``DJANGO_DEBUG=1`` serves this machine only.
    A tail call (sessions_app.routing): no frame of it stays on a connection's stack."""

    _asgi_single_callable = True

    def __init__(self, application: Any) -> None:
        self.application = application

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if settings.DEBUG:
            client = scope.get("client") or (None, None)
            forwarded = any(name in _FORWARDING_ASGI for name, _ in scope.get("headers", ()))
            if forwarded or not is_loopback_address(client[0]):
                return WebsocketDenier()(scope, receive, send)
        return self.application(scope, receive, send)


_FORWARDING_ASGI = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def _refusal(request: HttpRequest) -> HttpResponse | None:
    if settings.DEBUG and not is_loopback_client(request):
        return HttpResponseForbidden(DEBUG_REFUSAL, content_type="text/plain; charset=utf-8")
    return None


@sync_and_async_middleware
def debug_loopback_only(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """Middleware, first in ``MIDDLEWARE``: with ``DEBUG`` on, answer a request from anywhere but
    loopback with 403 and a line saying why, before any other middleware or view runs, so that no
    debug page (a 500's traceback and settings, a DisallowedHost 400, the 404's URL list) can reach
    another machine. ``make run HOST=0.0.0.0`` keeps DEBUG for the machine itself only.
    """
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> Any:
            return _refusal(request) or await get_response(request)

        return markcoroutinefunction(middleware)

    def sync_middleware(request: HttpRequest) -> Any:
        return _refusal(request) or get_response(request)

    return sync_middleware
