"""Sign-in by email link, with django-sesame's tokens: asked for, mailed, claimed once, in the
browser that asked, then exchanged for the usual SimpleJWT pair (docs/client.md, "Sign in by email
link"; the HTTP side in sessions_app/magic_views.py).

The rules, and why:

- **The answer never tells whether an account exists.** ``request_link`` does the same work for
  any username or email (a row, the throttle's counts, the cookie) and the view answers 202 with
  one body. A message is queued either way and made in another thread (sessions_app/mailer.py):
  for a matching active account with an email address it is sent, otherwise it is a decoy of the
  same size that is rendered and dropped, so the answer's time does not show it either.
- **Throttled, and bounded rows.** ``SESSIONS_MAGIC_LINK_LIMIT`` requests per
  ``SESSIONS_MAGIC_LINK_WINDOW`` seconds for one username or email as typed (a keyed hash of it:
  the same for a known and an unknown one, so a 429 tells nothing either) and from one address
  (``REMOTE_ADDR``, as django-axes): past it, 429. An account reached under both its username and
  its email gets no more than the limit: the extra requests answer 202 and send nothing. Rows older
  than the window (or the link's life, the longer) are deleted at each request.
- **Single-use.** A claim marks the row used with one conditional UPDATE (``used_at IS NULL``), so
  of two concurrent claims one wins; and django-sesame's ``SESAME_ONE_TIME``: the claim updates
  ``last_login``, which invalidates the user's other links too.
- **Expires.** ``SESSIONS_MAGIC_LINK_MAX_AGE`` seconds, checked by django-sesame (the token's own
  timestamp, ``max_age``) and on the row.
- **Bound to the browser that asked.** The request sets a random nonce in an HttpOnly,
  SameSite=Strict cookie (``nonce_cookie_name``) and the row keeps its SHA-256; a claim without
  that cookie fails (``other_browser``): a link forwarded, leaked, or opened on another device signs
  no one in, and a link made for an attacker's account cannot sign a victim into it (login CSRF).
  The person asks for a new link on the device they want to use (no confirmation step).
- **Not an access token, and no access token is a link.** The token is django-sesame's, scoped to
  its row (``magic-link:<row id>``); SimpleJWT refuses it on the socket and the REST API (no JWT),
  and a JWT is no sesame token of that scope.
- **Mail scanners.** The link opens the home page with the token in the URL's fragment (never sent
  to the server: not in access logs, nor in a ``Referer``); opening it changes nothing, the page's
  script posts the token to the claim endpoint.

Sign-in events go to the ``sessions_app.signin`` logger (sessions_app/signin_log.py):
``magic_requested``, ``magic_claimed``, ``magic_refused`` with ``reason=``, then the sign-in's own
``magic_ok`` (sessions_app/second_factor.py), with the user id and the client's address; never the
token, the nonce, the address asked for or the body.
"""

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac
from rest_framework.response import Response
from sesame import settings as sesame_settings
from sesame.backends import ModelBackend as SesameBackend
from sesame.utils import get_token

from . import cookies, mailer, second_factor
from .conf import app_settings
from .models import MagicLink
from .signin_log import signin_event

logger = logging.getLogger(__name__)

NONCE_COOKIE = "sessions_magic"
SECURE_NONCE_COOKIE = "__Secure-" + NONCE_COOKIE
NONCE_COOKIE_PATH = "/api/v1/login/magic/"
NONCE_BYTES = 32
MAX_LOGIN_LENGTH = 254  # an email address's longest (RFC 5321's path limit)
DECOY_TOKEN_BYTES = 18  # a django-sesame v2 token with SESAME_MAX_AGE: 4 + 4 + 10 bytes, 24 characters
DECOY_RECIPIENT = "nobody@example.invalid"  # RFC 2606: a name that cannot be delivered to

# Refusal reasons of a claim (the ``code`` of the answer, and of the log line).
INVALID = "link_invalid"
EXPIRED = "link_expired"
USED = "link_used"
OTHER_BROWSER = "other_browser"


class LinkRefused(Exception):
    """A claim refused: ``code`` is one of INVALID, EXPIRED, USED, OTHER_BROWSER."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Throttled(Exception):
    """Too many links asked for this username or email, or from this address; ``wait`` seconds
    (the whole window: an upper bound)."""

    def __init__(self, wait: int) -> None:
        super().__init__(wait)
        self.wait = wait


@dataclass(frozen=True)
class Requested:
    """What ``request_link`` did: the nonce for the browser's cookie (new, or the one it sent)."""

    nonce: str


def client_address(request: Any) -> str | None:
    """The client's address as django-axes takes it: ``REMOTE_ADDR`` (behind a proxy, daphne's
    ``--proxy-headers`` makes it the client's)."""
    return request.META.get("REMOTE_ADDR") or None


def nonce_cookie_name(request: Any) -> str:
    """``__Secure-sessions_magic`` over HTTPS, else ``sessions_magic`` (as cookies.cookie_name)."""
    return SECURE_NONCE_COOKIE if request.is_secure() else NONCE_COOKIE


def nonce_from_cookie(request: Any) -> str | None:
    """The nonce the browser's cookie carries, when it is one this server could have made."""
    value = request.COOKIES.get(nonce_cookie_name(request), "")
    return value if 40 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum() else None


def set_nonce_cookie(response: Any, request: Any, nonce: str) -> None:
    """The nonce in an HttpOnly, SameSite=Strict cookie sent to the magic-link endpoints only, for
    the life of a link."""
    cookies.set_strict_cookie(
        response,
        request,
        nonce_cookie_name(request),
        nonce,
        max_age=int(app_settings.MAGIC_LINK_MAX_AGE),
        path=NONCE_COOKIE_PATH,
    )


def delete_nonce_cookie(response: Any, request: Any) -> None:
    """Tell the browser to forget the nonce (same name, path and attributes)."""
    response.delete_cookie(nonce_cookie_name(request), path=NONCE_COOKIE_PATH, samesite="Strict")


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def login_digest(login: str) -> str:
    """The throttle's key for a username or email as typed: HMAC-SHA256 with ``SECRET_KEY``
    (Django's ``salted_hmac``) of the stripped, casefolded text. The text itself is never stored."""
    return salted_hmac("sessions.magic-link.login", login.strip().casefold(), algorithm="sha256").hexdigest()


def scope_of(link_id: Any) -> str:
    """The django-sesame scope of a link's token: the token is valid for that row only."""
    return f"magic-link:{link_id}"


def find_account(login: str) -> Any:
    """The active user whose username is ``login``, else the one active user whose email it is
    (case-insensitive; none when two share it); None otherwise."""
    users = get_user_model()._default_manager
    login = login.strip()
    user = users.filter(**{get_user_model().USERNAME_FIELD: login}, is_active=True).first()
    if user is None and "@" in login:
        matches = list(users.filter(email__iexact=login, is_active=True)[:2])
        user = matches[0] if len(matches) == 1 else None
    return user if user is not None and user.email else None


def _prune(now: Any) -> None:
    keep = max(float(app_settings.MAGIC_LINK_WINDOW), float(app_settings.MAGIC_LINK_MAX_AGE))
    MagicLink.objects.filter(created_at__lt=now - timedelta(seconds=keep)).delete()


def request_link(*, login: str, address: str | None, nonce: str | None, origin: str) -> Requested:
    """Record a request for a sign-in link and, for a matching account, queue its mail.

    ``login``: a username or email address, as typed; ``address``: the client's; ``nonce``: the
    one the browser's cookie already carries (kept: the browser's earlier links stay valid), or
    None for a new one; ``origin``: ``scheme://host[:port]`` the link points to.

    The same work, row and answer whether the account exists (module docstring). Raises Throttled
    past ``SESSIONS_MAGIC_LINK_LIMIT`` requests in the window for this login or this address.
    """
    nonce = nonce or secrets.token_urlsafe(NONCE_BYTES)
    digest = login_digest(login)
    now = timezone.now()
    since = now - timedelta(seconds=float(app_settings.MAGIC_LINK_WINDOW))
    limit = int(app_settings.MAGIC_LINK_LIMIT)
    with transaction.atomic():
        _prune(now)
        recent = MagicLink.objects.filter(created_at__gte=since)
        if recent.filter(login_digest=digest).count() >= limit or (
            address is not None and recent.filter(address=address).count() >= limit
        ):
            signin_event("magic_refused", address=address, reason="throttled")
            raise Throttled(int(app_settings.MAGIC_LINK_WINDOW))
        user = find_account(login)
        if user is not None and recent.filter(user=user).count() >= limit:
            # Reached under its other name: the answer stays the same, nothing is sent.
            signin_event("magic_refused", user_id=user.pk, address=address, reason="throttled_account")
            user = None
        link = MagicLink.objects.create(
            user=user, login_digest=digest, address=address, nonce_hash=_sha256(nonce), created_at=now
        )
        # Without an account, a decoy of the same size is made and rendered, never sent: the same
        # work in this thread and in the mail thread (bench/magic_link_timing.py measures both).
        token = get_token(user, scope_of(link.pk)) if user is not None else secrets.token_urlsafe(DECOY_TOKEN_BYTES)
        url = f"{origin}{reverse('home')}#" + urlencode({"link": str(link.pk), sesame_settings.TOKEN_NAME: token})
        to, deliver = (user.email, True) if user is not None else (DECOY_RECIPIENT, False)
        transaction.on_commit(
            lambda: mailer.send_later(subject="Your sign-in link", body=_body(url), to=to, deliver=deliver)
        )
    signin_event("magic_requested", user_id=user.pk if user else None, address=address, link=str(link.pk))
    return Requested(nonce=nonce)


def _body(url: str) -> str:
    minutes = max(1, int(app_settings.MAGIC_LINK_MAX_AGE) // 60)
    return (
        "Open this link to sign in:\n\n"
        f"{url}\n\n"
        f"It works once, for {minutes} minute{'s' if minutes != 1 else ''}, and only in the browser where you asked "
        "for it. If you did not ask for it, ignore this message.\n"
    )


def claim_link(*, link_id: Any, token: str, nonce: str | None, address: str | None) -> Any:
    """Check a link and mark it used; returns its user (then call ``complete_sign_in``).

    Raises LinkRefused: INVALID (no such link, a token that is not this link's, a JWT, or a link
    ended since it was sent: another link of the user claimed, ``SESAME_ONE_TIME``; a changed
    password or email address), EXPIRED (older than ``SESSIONS_MAGIC_LINK_MAX_AGE``), USED
    (claimed before), OTHER_BROWSER (no nonce cookie, or another browser's). A refusal changes
    nothing: a claim from another browser does not use the link up.
    """
    link = MagicLink.objects.filter(pk=link_id).select_related("user").first()
    user_id = link.user_id if link is not None else None
    try:
        if link is None or link.user is None:
            raise LinkRefused(INVALID)
        max_age = int(app_settings.MAGIC_LINK_MAX_AGE)
        # django-sesame's backend called directly, not through django.contrib.auth.authenticate():
        # no other backend (django-axes' counts) sees the token, nor user_login_failed's credentials.
        user = SesameBackend().authenticate(None, sesame=token, scope=scope_of(link.pk), max_age=max_age)
        if user is None or user.pk != link.user_id:
            # Read again: a concurrent claim of this very link may have committed since the read
            # above, and its SESAME_ONE_TIME (last_login) is what made the token fail here.
            if MagicLink.objects.filter(pk=link.pk, used_at__isnull=False).exists():
                raise LinkRefused(USED)
            if link.created_at <= timezone.now() - timedelta(seconds=max_age):
                raise LinkRefused(EXPIRED)
            raise LinkRefused(INVALID)  # also: another link of the user was claimed since (ONE_TIME)
        if link.created_at <= timezone.now() - timedelta(seconds=max_age):
            raise LinkRefused(EXPIRED)
        if nonce is None or not hmac.compare_digest(_sha256(nonce), link.nonce_hash):
            raise LinkRefused(OTHER_BROWSER)
        with transaction.atomic():
            now = timezone.now()
            if not MagicLink.objects.filter(pk=link.pk, used_at__isnull=True).update(used_at=now, used_address=address):
                raise LinkRefused(USED)
            user.last_login = now  # SESAME_ONE_TIME: every other link of the user ends too
            user.save(update_fields=["last_login"])
    except LinkRefused as refused:
        signin_event("magic_refused", user_id=user_id, address=address, reason=refused.code)
        raise
    signin_event("magic_claimed", user_id=user.pk, address=address, link=str(link.pk))
    return user


def complete_sign_in(request: Any, user: Any) -> Response:
    """The link proved who the user is: the sign-in's next step, as the pages' cookie sign-in
    (sessions_app/second_factor.py, ``cookie=True``).

    Without two-factor: ``{"access", "username"}`` in the body and the refresh token
    (``tokens.LoginRefreshToken``: tied to the password, ``auth_time`` now) in the HttpOnly
    cookie. With two-factor on: ``{"otp_required": true, "ticket", "expires_in", "username"}`` and
    no token; the page sends the code with the ticket to ``POST /api/v1/token/cookie/otp/``. A link
    so never skips the second factor.
    """
    answer = second_factor.sign_in(user, request=request, method="magic", cookie=True)
    response = Response({**answer, "username": user.get_username()})
    cookies.refresh_to_cookie(request, response)  # the refresh token out of the body, into the cookie
    return response
