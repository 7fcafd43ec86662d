"""The token API's SimpleJWT classes: sign-in answering a lockout with 429, refresh tokens that a
password change ends and that rotation cannot keep alive past the sign-in's maximum age, and the
user check shared by the socket.

Three rules, on top of SimpleJWT's own (signature, expiry, type, blacklist, active user):

- **Tied to the password.** With ``SIMPLE_JWT["CHECK_REVOKE_TOKEN"]``, SimpleJWT puts a hash of the
  user's password hash in every token it makes (``REVOKE_TOKEN_CLAIM``, ``"hash_password"``) and its
  ``JWTAuthentication.get_user`` refuses a token whose claim no longer matches: ``set_password``
  (or the admin's password form) ends every token made before. SimpleJWT 5.5 checks it for access
  tokens only; ``LoginRefreshToken`` checks it when a refresh token is used, so the old refresh
  token cannot make new access tokens either. A rehash at sign-in (a PBKDF2 hash rewritten with
  Argon2, sessions_app/passwords.py) changes the hash too, and so ends the user's other tokens once.
- **A maximum age for a sign-in.** Every rotation gave the refresh token a new full lifetime, so
  a client that refreshed in time stayed signed in forever (simplejwt#549). ``LoginRefreshToken``
  carries the time of the password sign-in, ``auth_time`` (the OpenID Connect claim, seconds since
  the epoch), unchanged through every rotation and into its access tokens, caps every ``exp`` at
  ``auth_time + SESSIONS_LOGIN_MAX_AGE``, and refuses a refresh token past it, or without it.
- **Minted tokens.** An access token without the claims (made with the signing key outside the
  token API: the conformance suite's, or one from before this rule) is checked as SimpleJWT checks
  any other: only the holder of ``SECRET_KEY`` can make one, and one from before lives at most
  ``JWT_ACCESS_LIFETIME``. Refresh tokens must carry both.

Sign-out, ``POST /api/v1/token/revoke/`` (``TokenRevokeSerializer``): SimpleJWT's blacklist, then
the user's sockets end on every process (``not_authenticated``, ``data.reason`` ``logged_out``, 4401).

Installed as ``SIMPLE_JWT["TOKEN_BLACKLIST_SERIALIZER"]``, so SimpleJWT's own ``TokenBlacklistView``
serves it. The pages' cookie endpoints (sessions_app/cookies.py) subclass these serializers, with the
refresh token read from the cookie.

Every socket of the user ends, not only those of the login that signed out: an access
token carries no trace of the refresh token it came from (SimpleJWT gives every rotated refresh
token a new ``jti``), so the server cannot tell them apart. The user's other logins refresh their
tokens and reconnect at once (the JavaScript client does, on 4401); the one that signed out cannot.
The tabs of one browser share the pages' cookie: they are one login, and all of them end.
"""

import datetime
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import authentication, serializers
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenBlacklistSerializer
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import datetime_to_epoch, get_md5_hash_password

from . import events, lockout, protocol, second_factor
from .conf import app_settings
from .signin_log import signin_event

AUTH_TIME_CLAIM = "auth_time"


def login_ends_at(payload: dict[str, Any]) -> int | None:
    """Seconds since the epoch when the token's sign-in reaches ``SESSIONS_LOGIN_MAX_AGE``, or None
    for a token without ``auth_time``."""
    auth_time = payload.get(AUTH_TIME_CLAIM)
    if type(auth_time) is not int:
        return None
    return auth_time + int(app_settings.LOGIN_MAX_AGE)


def login_expired(payload: dict[str, Any]) -> bool:
    """True when the token carries ``auth_time`` and its sign-in is older than ``SESSIONS_LOGIN_MAX_AGE``."""
    ends_at = login_ends_at(payload)
    return ends_at is not None and ends_at <= time.time()


def password_matches(payload: dict[str, Any], user: Any) -> bool:
    """True unless the token carries the password claim and it is not the user's current password's."""
    claim = api_settings.REVOKE_TOKEN_CLAIM
    if not api_settings.CHECK_REVOKE_TOKEN or claim not in payload:
        return True
    return payload[claim] == get_md5_hash_password(user.password)


def _cap_exp(payload: dict[str, Any]) -> None:
    ends_at = login_ends_at(payload)
    if ends_at is not None and payload.get("exp", ends_at) > ends_at:
        payload["exp"] = ends_at


class LoginRefreshToken(RefreshToken):
    """SimpleJWT's refresh token, with ``auth_time`` kept through rotation and the sign-in's age and
    the user's password checked whenever it is used (module docstring).

    Raises TokenError (401 from the token views) for a token past ``SESSIONS_LOGIN_MAX_AGE``,
    without ``auth_time`` or the password claim, of an unknown user, or of a user whose password
    changed since.
    """

    def __init__(self, token: Any = None, verify: bool = True) -> None:
        super().__init__(token, verify)
        if token is None:  # a new sign-in: now is its time
            self.payload[AUTH_TIME_CLAIM] = datetime_to_epoch(self.current_time)
            _cap_exp(self.payload)

    def set_exp(
        self, claim: str = "exp", from_time: datetime.datetime | None = None, lifetime: datetime.timedelta | None = None
    ) -> None:
        """As SimpleJWT's (rotation calls it), never past the sign-in's maximum age."""
        super().set_exp(claim, from_time, lifetime)
        if claim == "exp":
            _cap_exp(self.payload)

    def verify(self) -> None:
        super().verify()  # expiry, blacklist, type
        if login_ends_at(self.payload) is None:
            raise TokenError(_("The token has no sign-in time; sign in again."))
        if login_expired(self.payload):
            raise TokenError(_("The sign-in is too old; sign in again."))
        if api_settings.CHECK_REVOKE_TOKEN:
            if api_settings.REVOKE_TOKEN_CLAIM not in self.payload:
                raise TokenError(_("The token is not tied to a password; sign in again."))
            user_id = self.payload.get(api_settings.USER_ID_CLAIM)
            user = get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: user_id}).first()
            if user is None:
                raise TokenError(_("User not found"))
            if not password_matches(self.payload, user):
                raise TokenError(_("The user's password has been changed."))

    @property
    def access_token(self) -> AccessToken:
        """As SimpleJWT's (the claims copied, ``auth_time`` included), with ``exp`` capped too."""
        access = super().access_token
        _cap_exp(access.payload)
        return access


class TokenObtainPairSerializer(serializers.TokenObtainPairSerializer):
    """``{"username", "password"}`` -> ``{"refresh", "access"}``, as SimpleJWT's, with
    LoginRefreshToken; for a user with two-factor sign-in, ``{"otp_required": true, "ticket",
    "expires_in"}`` and no token instead (sessions_app/second_factor.py).

    Raises AuthenticationFailed (401, ``no_active_account``) for wrong credentials or an inactive
    user, and lockout.LockedOut (429, ``Retry-After``) when django-axes refused the sign-in: too
    many failures for this username or from this address (sessions_app/lockout.py).
    """

    token_class = LoginRefreshToken
    cookie = False  # the ticket's endpoint family (True: the pages' cookie sign-in)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        request = self.context.get("request")
        try:
            # SimpleJWT's TokenObtainSerializer: authenticate (django-axes first), then the
            # active-user rule; it sets self.user. The pair comes from second_factor instead.
            serializers.TokenObtainSerializer.validate(self, attrs)
        except AuthenticationFailed:
            if lockout.locked_out(request):
                signin_event("password_locked_out", request=request)
                raise lockout.LockedOut() from None
            signin_event("password_refused", request=request)
            raise
        return second_factor.sign_in(self.user, request=request, method="password", cookie=self.cookie)


class TokenRefreshSerializer(serializers.TokenRefreshSerializer):
    """``{"refresh"}`` -> ``{"access", "refresh"}``, as SimpleJWT's (rotation, the old token
    blacklisted), with LoginRefreshToken's checks: 401 for a token past its sign-in's maximum age
    or made before its user's password changed."""

    token_class = LoginRefreshToken


class JWTAuthentication(authentication.JWTAuthentication):
    """SimpleJWT's, except that a token without the password claim (minted with the signing key,
    module docstring) is not refused for the lack of it. Used by the socket (presence.user_check)
    and the REST API alike.
    """

    def get_user(self, validated_token: Any) -> Any:
        if api_settings.REVOKE_TOKEN_CLAIM in validated_token or not api_settings.CHECK_REVOKE_TOKEN:
            return super().get_user(validated_token)
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError:
            raise InvalidToken(_("Token contained no recognizable user identification")) from None
        try:
            user = self.user_model.objects.get(**{api_settings.USER_ID_FIELD: user_id})
        except self.user_model.DoesNotExist:
            raise AuthenticationFailed(_("User not found"), code="user_not_found") from None
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        return user


class TokenRevokeSerializer(TokenBlacklistSerializer):
    """``{"refresh"}``: blacklists the refresh token (SimpleJWT refuses a bad, expired or already
    blacklisted one with 401), then ends the user's sockets once that commits."""

    def validate(self, attrs: dict[str, Any]) -> dict[Any, Any]:
        refresh = self.token_class(attrs["refresh"])
        blacklisted, _ = refresh.blacklist()
        user_id = blacklisted.token.user_id
        if user_id is not None:
            events.emit([events.user_disconnect(user_id, protocol.LOGGED_OUT)])
        return {}
