"""Per-connection limits on what a client sends: frame size and a token bucket (protocol section 6)."""

import time

from . import protocol
from .conf import app_settings
from .protocol import ProtocolError


def check_size(frame: str | bytes) -> None:
    """Raise ProtocolError(MESSAGE_TOO_LARGE) for a frame over ``SESSIONS_MAX_MESSAGE_BYTES`` bytes."""
    limit = app_settings.MAX_MESSAGE_BYTES
    # A str of n characters encodes to n..4n bytes: encode only when it can matter.
    if len(frame) > limit // 4 and len(frame if isinstance(frame, bytes) else frame.encode()) > limit:
        raise ProtocolError(protocol.MESSAGE_TOO_LARGE, f"Frames are limited to {limit} bytes.")


class RateLimit:
    """Token bucket: ``SESSIONS_RATE_LIMIT`` frames a second, bursts of ``SESSIONS_RATE_BURST``.

    A refused frame gets ``rate_limited``; after ``SESSIONS_RATE_BURST`` refusals in a row the
    client is taken to be flooding and the socket closes with 4429.
    """

    __slots__ = ("_allowance", "_checked_at", "_strikes")

    def __init__(self) -> None:
        self._allowance: float | None = None  # None: full
        self._checked_at = 0.0
        self._strikes = 0

    def check(self) -> None:
        """Take one token; raises ProtocolError(RATE_LIMITED), with close 4429 when flooding."""
        now = time.monotonic()
        burst = app_settings.RATE_BURST
        if self._allowance is None:
            allowance = float(burst)
        else:
            allowance = min(burst, self._allowance + (now - self._checked_at) * app_settings.RATE_LIMIT)
        self._checked_at = now
        if allowance >= 1:
            self._allowance = allowance - 1
            self._strikes = 0
            return
        self._allowance = allowance
        self._strikes += 1
        raise ProtocolError(
            protocol.RATE_LIMITED,
            "Too many messages; slow down.",
            close_code=protocol.CLOSE_RATE_LIMITED if self._strikes >= burst else None,
        )
