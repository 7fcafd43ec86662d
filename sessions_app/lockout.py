"""Password guessing, throttled: django-axes' lockout, per account and per address, with the app's
settings (``SESSIONS_LOGIN_FAILURE_LIMIT``, ``SESSIONS_LOGIN_LOCKOUT``).

django-axes records each failed sign-in (``user_login_failed``) in the database, so the count is
shared by every server process, and its backend (first in ``AUTHENTICATION_BACKENDS``) refuses a
sign-in before its password is checked, costing no hash, once ``LOGIN_FAILURE_LIMIT`` failures
were recorded for the username (from any address) or from the address (for any usernames), each
within ``LOGIN_LOCKOUT`` seconds of the one before. The lockout lasts until ``LOGIN_LOCKOUT``
seconds after the last counted failure: attempts during it are refused without counting
(``AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False``), so a locked-out user knows when to try
again. Correct sign-ins neither count nor reset the count (``AXES_RESET_ON_SUCCESS`` stays off: it
deletes every record of the address too, so a guesser with an account of its own could reset its
count, and a victim's, between guesses).

The admin's login answers a lockout with axes' own 429 page (``axes.middleware.AxesMiddleware``);
the token API with a DRF 429 (``LockedOut``, from ``sessions_app.tokens``).
"""

from datetime import timedelta
from typing import Any

from django.http import HttpRequest
from rest_framework import exceptions, status

from .conf import app_settings


def failure_limit(request: HttpRequest, credentials: Any) -> int:
    """``AXES_FAILURE_LIMIT``: failed sign-ins before a lockout (``SESSIONS_LOGIN_FAILURE_LIMIT``)."""
    return app_settings.LOGIN_FAILURE_LIMIT


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """``AXES_COOLOFF_TIME``: how long failures are remembered and a lockout lasts (``SESSIONS_LOGIN_LOCKOUT``)."""
    return timedelta(seconds=app_settings.LOGIN_LOCKOUT)


def locked_out(request: Any) -> bool:
    """True when django-axes refused or locked out the sign-in made with ``request`` (a Django or a
    DRF request: axes flags the object that was passed to ``authenticate``)."""
    return bool(getattr(request, "axes_locked_out", False))


class LockedOut(exceptions.APIException):
    """HTTP 429 with ``Retry-After`` (seconds, the whole lockout: an upper bound) for the token API."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Too many failed sign-ins for this account or from this address; try again later."
    default_code = "locked_out"

    def __init__(self) -> None:
        super().__init__()
        self.wait = int(app_settings.LOGIN_LOCKOUT)  # DRF's exception handler sends it as Retry-After
