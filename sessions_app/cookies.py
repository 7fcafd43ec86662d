"""The token API for the browser pages: the refresh token in an HttpOnly cookie, the access token
in the body only (docs/client.md, "Tokens").

Three endpoints beside the JSON ones (``/api/v1/token/``, ``refresh/``, ``revoke/``), which stay as
they are for scripts and apps (the refresh token in the body, no cookie read or set):

- ``POST /api/v1/token/cookie/`` ``{"username", "password"}`` -> ``{"access"}``, and the refresh
  token in the cookie. Refusals as ``/api/v1/token/`` (401, 429 with ``Retry-After``, 400). For a
  user with two-factor sign-in: ``{"otp_required": true, "ticket", "expires_in"}``, no cookie;
  ``POST /api/v1/token/cookie/otp/`` ``{"ticket", "code"}`` then answers as this one
  (sessions_app/second_factor.py, sessions_app/otp_views.py).
- ``POST /api/v1/token/cookie/refresh/`` (no body needed) -> ``{"access"}``, and the rotated refresh
  token in the cookie (SimpleJWT's rotation: the one sent is blacklisted). 401 when the cookie is
  missing or its token refused (expired, blacklisted, past ``SESSIONS_LOGIN_MAX_AGE``, a changed
  password); the cookie is then left alone: a refusal may come from a request that raced a
  rotation, and deleting the cookie would delete the newer one the browser already holds.
- ``POST /api/v1/token/cookie/revoke/`` -> ``{}``: the cookie's token blacklisted and the user's
  sockets ended (``TokenRevokeSerializer``: 4401, ``logged_out``), and the cookie deleted; deleted
  too when its token is refused (401), since signing out wants it gone anyway.

The cookie: ``sessions_refresh`` (``__Secure-sessions_refresh`` over HTTPS, a name browsers only
accept with ``Secure`` from an HTTPS response, so a plain-HTTP page of the same host cannot plant
one), ``HttpOnly`` (no script reads it), ``SameSite=Strict``, ``Path=/api/v1/token/cookie/`` (sent
to these three endpoints only, not to the pages, the socket or the JSON token API), ``Max-Age`` the
refresh token's remaining life. ``Secure`` when the request came over HTTPS (``request.is_secure()``,
which follows ``SECURE_PROXY_SSL_HEADER``); with ``DJANGO_HTTPS=1`` every request is HTTPS. Over
plain ``http://127.0.0.1`` in development the cookie is not ``Secure`` (a browser would not keep
a ``Secure`` cookie set over plain HTTP on 127.0.0.1).

Cross-site requests (CSRF): the cookie authenticates these endpoints, so a request must prove it
comes from this site's own pages (``SameOriginOnly``), on top of ``SameSite=Strict``.
"""

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt import views
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.utils import aware_utcnow, datetime_to_epoch

from . import tokens

COOKIE_PATH = "/api/v1/token/cookie/"
COOKIE_NAME = "sessions_refresh"
SECURE_COOKIE_NAME = "__Secure-" + COOKIE_NAME


def cookie_name(request: Any) -> str:
    """The refresh cookie's name for this request: ``__Secure-sessions_refresh`` over HTTPS, else
    ``sessions_refresh``. Over HTTPS only the first is read, so a cookie that a plain-HTTP response
    set cannot stand in for it."""
    return SECURE_COOKIE_NAME if request.is_secure() else COOKIE_NAME


def refresh_from_cookie(request: Any) -> str:
    """The refresh token the request's cookie carries; raises InvalidToken (401) when there is none."""
    value = request.COOKIES.get(cookie_name(request), "")
    if not value:
        raise InvalidToken(_("No refresh token cookie: sign in again."))
    return value


def set_refresh_cookie(response: Response, request: Any, refresh: str) -> None:
    """Put ``refresh`` in the response's cookie, for the rest of its life (its ``exp``, seconds)."""
    exp = tokens.LoginRefreshToken(refresh, verify=False)["exp"]
    set_strict_cookie(
        response,
        request,
        cookie_name(request),
        refresh,
        max_age=max(0, exp - datetime_to_epoch(aware_utcnow())),
        path=COOKIE_PATH,
    )


def set_strict_cookie(response: Any, request: Any, name: str, value: str, *, max_age: int, path: str) -> None:
    """Set a cookie no script reads and no other site's request carries: ``HttpOnly``,
    ``SameSite=Strict``, ``Secure`` over HTTPS, for ``max_age`` seconds on ``path``."""
    response.set_cookie(
        name, value, max_age=max_age, path=path, secure=request.is_secure(), httponly=True, samesite="Strict"
    )


def delete_refresh_cookie(response: Response, request: Any) -> None:
    """Tell the browser to forget the refresh cookie (same name, path and attributes)."""
    response.delete_cookie(cookie_name(request), path=COOKIE_PATH, samesite="Strict")


def own_origin(request: Any) -> str:
    """``scheme://host[:port]`` of the request as this server sees it (``request.scheme`` follows
    ``SECURE_PROXY_SSL_HEADER``; ``get_host`` checks ``ALLOWED_HOSTS``)."""
    return f"{request.scheme}://{request.get_host()}".lower()


def from_own_pages(request: Any) -> bool:
    """True when a browser says the request comes from a page of this very origin.

    - ``Origin`` must be present and be this server's own origin (scheme, host and port), or one
      of Django's ``CSRF_TRUSTED_ORIGINS``. Browsers send ``Origin`` on every ``POST``, same-origin
      ones included; a script that is no browser sends its own and has no cookie to borrow.
    - ``Sec-Fetch-Site``, when sent (current browsers), must be ``same-origin``.

    The pages' Referrer-Policy must let the browser send the origin to itself: ``same-origin``
    (Django's default ``SECURE_REFERRER_POLICY``, and templates/base.html) does; under
    ``no-referrer`` a browser sends ``Origin: null`` even to its own origin, and the pages could
    not sign in.

    Stricter than the socket's origin rule (sessions_app/security.py: the hosts of
    ``ALLOWED_HOSTS`` on any scheme and port): cookies are not kept apart by port or scheme, so a
    page on another port of the same host is "same-site" and gets ``SameSite=Strict`` cookies.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get("Origin", "").strip().lower()
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.path or parts.query or parts.fragment:
        return False
    trusted = {item.lower().rstrip("/") for item in getattr(settings, "CSRF_TRUSTED_ORIGINS", [])}
    return origin == own_origin(request) or origin in trusted


class SameOriginOnly(BasePermission):
    """DRF permission of the cookie endpoints: 403 for a request not from this site's own pages
    (``from_own_pages``). Checked before the view reads the cookie or the body."""

    message = _("Cookie sign-in requests must come from this site's own pages (Origin).")

    def has_permission(self, request: Request, view: Any) -> bool:
        return from_own_pages(request)


class CookieTokenRefreshSerializer(tokens.TokenRefreshSerializer):
    """``tokens.TokenRefreshSerializer`` (rotation, blacklist, LoginRefreshToken's checks) with the
    refresh token taken from the cookie; the body is not read. Raises InvalidToken (401) without
    a cookie, TokenError (401 from the view) for a refused token."""

    refresh = None  # type: ignore[assignment]  # no body field: the cookie carries it

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        return super().validate({"refresh": refresh_from_cookie(self.context["request"])})


class CookieTokenRevokeSerializer(tokens.TokenRevokeSerializer):
    """``tokens.TokenRevokeSerializer`` (blacklist, then the user's sockets end with
    ``logged_out``) with the refresh token taken from the cookie. 401 as the JSON revoke."""

    refresh = None  # type: ignore[assignment]

    def validate(self, attrs: dict[str, Any]) -> dict[Any, Any]:
        return super().validate({"refresh": refresh_from_cookie(self.context["request"])})


def refresh_to_cookie(request: Any, response: Response) -> None:
    """Move a successful answer's refresh token out of the body into the cookie."""
    # Only a successful answer carries a refresh token.
    data = getattr(response, "data", None)
    if response.status_code == 200 and isinstance(data, dict) and data.get("refresh"):
        set_refresh_cookie(response, request, data.pop("refresh"))


class CookieTokenObtainPairSerializer(tokens.TokenObtainPairSerializer):
    """``tokens.TokenObtainPairSerializer`` whose two-factor tickets are good at the cookie
    endpoint only (``/api/v1/token/cookie/otp/``, sessions_app/second_factor.py)."""

    cookie = True


class CookieTokenObtainView(views.TokenObtainPairView):
    """``POST /api/v1/token/cookie/``: the sign-in of ``tokens.TokenObtainPairSerializer``, the
    refresh token in the cookie (module docstring); for a user with two-factor sign-in, the
    ticket instead (no cookie)."""

    permission_classes = (SameOriginOnly,)
    serializer_class = CookieTokenObtainPairSerializer

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        refresh_to_cookie(request, response)
        return super().finalize_response(request, response, *args, **kwargs)


class CookieTokenRefreshView(views.TokenRefreshView):
    """``POST /api/v1/token/cookie/refresh/``: a new access token, the rotated refresh token in
    the cookie."""

    permission_classes = (SameOriginOnly,)
    serializer_class = CookieTokenRefreshSerializer

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        refresh_to_cookie(request, response)
        return super().finalize_response(request, response, *args, **kwargs)


class CookieTokenRevokeView(views.TokenBlacklistView):
    """``POST /api/v1/token/cookie/revoke/``: sign-out; the cookie is deleted whether its token
    was still valid (200) or not (401), never for a request refused by ``SameOriginOnly``."""

    permission_classes = (SameOriginOnly,)
    serializer_class = CookieTokenRevokeSerializer

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        if response.status_code in (200, 401):
            delete_refresh_cookie(response, request)
        return super().finalize_response(request, response, *args, **kwargs)
