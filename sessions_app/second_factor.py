"""The second step of a sign-in: once the first factor is proved (a password now, a magic link
later), tokens for a user without two-factor, else a ticket that a code exchanges for them.

Every sign-in view calls ``sign_in`` once it knows the user, and returns what it returns::

    return Response(second_factor.sign_in(user, request=request, method="magic", cookie=True))

- A user without a confirmed TOTP device: ``{"refresh", "access"}`` (SimpleJWT's pair,
  tokens.LoginRefreshToken), as before.
- A user with one: ``{"otp_required": true, "ticket", "expires_in"}`` and no token. The client
  sends ``POST /api/v1/login/otp/`` ``{"ticket", "code"}`` (``/api/v1/token/cookie/otp/`` for a
  ticket of the pages' cookie sign-in), with the 6-digit code of the authenticator app or a
  recovery code, and gets the pair (``complete``).

The ticket: 32 random bytes (URL-safe base64) that the server keeps as a SHA-256 digest
(models.SignInTicket), so a copy of the table is no use. It is single use (deleted in the
transaction that accepts the code: a replay, even a concurrent one, finds no row), lives
``SESSIONS_OTP_TICKET_LIFETIME`` seconds (300), dies when the user's password changes (it keeps
SimpleJWT's hash of the password hash, as the tokens do) or the user is deactivated, and is
good only at the endpoint family that issued it (JSON or cookie), so a ticket the pages got
cannot be turned into a refresh token in a script's hands. A wrong code leaves the ticket alive
(typos happen) and counts against both throttles (sessions_app/otp_devices.py); a refused ticket
is 401 ``invalid_ticket``. At most ``TICKETS_PER_USER`` live tickets per user (the oldest go),
and expired ones are deleted whenever a ticket is issued.
"""

import datetime
import hashlib
import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.utils import get_md5_hash_password

from . import otp_devices
from .conf import app_settings
from .models import SignInTicket
from .otp_errors import TicketRefused
from .signin_log import signin_event

TICKETS_PER_USER = 5


def tokens_for(user: Any) -> dict[str, str]:
    """A new sign-in's ``{"refresh", "access"}`` (tokens.LoginRefreshToken: ``auth_time`` now)."""
    from .tokens import LoginRefreshToken  # tokens imports this module

    refresh = LoginRefreshToken.for_user(user)
    return {"refresh": str(refresh), "access": str(refresh.access_token)}


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


@transaction.atomic
def ticket_issue(user: Any, *, method: str, cookie: bool) -> str:
    """A new ticket for ``user`` (module docstring); deletes every expired ticket, and this
    user's oldest beyond ``TICKETS_PER_USER``."""
    now = timezone.now()
    SignInTicket.objects.filter(expires_at__lte=now).delete()
    keep = list(
        SignInTicket.objects.filter(user=user)
        .order_by("-created_at")
        .values_list("digest", flat=True)[: TICKETS_PER_USER - 1]
    )
    SignInTicket.objects.filter(user=user).exclude(digest__in=keep).delete()
    ticket = secrets.token_urlsafe(32)
    SignInTicket.objects.create(
        digest=_digest(ticket),
        user=user,
        password_hash=get_md5_hash_password(user.password),
        method=method,
        cookie=cookie,
        expires_at=now + datetime.timedelta(seconds=app_settings.OTP_TICKET_LIFETIME),
    )
    return ticket


def sign_in(user: Any, *, request: Any, method: str = "password", cookie: bool = False) -> dict[str, Any]:
    """Called once the first factor (``method``: ``"password"``, ``"magic"``) proved ``user``.

    Returns the token pair for a user without two-factor, else ``{"otp_required": True,
    "ticket", "expires_in"}`` (seconds) and no token. ``cookie``: the ticket is for the pages'
    cookie endpoint (``/api/v1/token/cookie/otp/``), else for ``/api/v1/login/otp/``.
    """
    if not otp_devices.has_second_factor(user):
        signin_event(f"{method}_ok", request=request, user_id=user.pk)
        return tokens_for(user)
    ticket = ticket_issue(user, method=method, cookie=cookie)
    signin_event(f"{method}_ok", request=request, user_id=user.pk, otp="required")
    signin_event("otp_required", request=request, user_id=user.pk, method=method)
    return {"otp_required": True, "ticket": ticket, "expires_in": int(app_settings.OTP_TICKET_LIFETIME)}


def _live_ticket(ticket: str, *, cookie: bool, lock: bool = False) -> SignInTicket | None:
    rows = SignInTicket.objects.select_related("user")
    if lock:
        rows = rows.select_for_update(of=("self",))  # the ticket's row, not the user's
    row = rows.filter(digest=_digest(ticket), cookie=cookie).first()
    if row is None:
        return None
    user = row.user
    if (
        row.expires_at <= timezone.now()
        or not user.is_active
        or not secrets.compare_digest(row.password_hash, get_md5_hash_password(user.password))
    ):
        return None
    return row


def complete(*, ticket: str, code: str, request: Any, cookie: bool) -> dict[str, str]:
    """Exchange a ticket and a code (TOTP or recovery) for the token pair.

    Raises TicketRefused (401 ``invalid_ticket``), lockout.LockedOut (429 ``locked_out``),
    otp_devices.CodeThrottled (429 ``otp_throttled``, ``Retry-After``) or
    otp_devices.CodeRefused (401 ``invalid_code``; the ticket stays good).
    """
    row = _live_ticket(ticket, cookie=cookie)
    if row is None:
        signin_event("ticket_refused", request=request)
        raise TicketRefused()
    user = row.user
    otp_devices.refuse_if_locked_out(request, user)
    with transaction.atomic():
        row = _live_ticket(ticket, cookie=cookie, lock=True)  # again, locked: one exchange per ticket
        if row is None:
            check = None
        else:
            check = otp_devices.check_code(user, code)
            # The row is locked, so this request is the only one to delete it; the count makes
            # sure of it all the same (a database without SELECT ... FOR UPDATE).
            if check.ok and SignInTicket.objects.filter(digest=row.digest).delete()[0] != 1:
                check = None
    if check is None:
        signin_event("ticket_refused", request=request, user_id=user.pk)
        raise TicketRefused()
    otp_devices.settle(request, user, check, purpose="sign_in")
    return tokens_for(user)
