"""The WebSocket origin policy (protocol section 1)."""

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings

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
    """Wrap ``application`` with the origin policy.

    Allowed: ``SESSIONS_ALLOWED_ORIGINS`` when set (Channels patterns: ``host``, ``.domain``,
    ``https://host:port`` or ``*``), else the hosts of ``ALLOWED_HOSTS`` on any scheme and port.
    """
    allowed = app_settings.ALLOWED_ORIGINS or settings.ALLOWED_HOSTS
    return OptionalOriginValidator(application, list(allowed))
