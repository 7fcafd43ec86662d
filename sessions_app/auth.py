"""Token checks for the socket, with SimpleJWT's own machinery and sessions_app.tokens' rules. Never
logs a token."""

import datetime
from typing import Any

from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token

from . import protocol, tokens
from .protocol import ProtocolError


def validate_access_token(raw: Any) -> Token:
    """Check an access token's signature, expiry, type and sign-in age; returns the validated token.

    Uses ``JWTAuthentication.get_validated_token``, so only ``SIMPLE_JWT["AUTH_TOKEN_CLASSES"]``
    (access tokens) pass: refresh tokens, expired, malformed and foreign-signed tokens raise
    ProtocolError(NOT_AUTHENTICATED), as does a token whose sign-in (``auth_time``) is older than
    ``SESSIONS_LOGIN_MAX_AGE`` (its ``exp`` is capped there when it is made; this catches a maximum
    age lowered since). CPU only (HMAC), safe on the event loop. The user, and the password the
    token was made under, are checked separately, in the database hop (presence.connection_open).
    """
    if not isinstance(raw, str) or not raw:
        raise ProtocolError(protocol.NOT_AUTHENTICATED, 'Send {"token": "<access token>"} first.')
    try:
        token = JWTAuthentication().get_validated_token(raw)
    except InvalidToken:
        raise ProtocolError(protocol.NOT_AUTHENTICATED, "The token is invalid or expired.") from None
    if tokens.login_expired(token.payload):
        raise ProtocolError(protocol.NOT_AUTHENTICATED, "The sign-in is too old; sign in again.")
    return token


def token_user_id(token: Token) -> Any:
    """The user id claim of a validated token (``SIMPLE_JWT["USER_ID_CLAIM"]``), or None."""
    return token.get(api_settings.USER_ID_CLAIM)


def token_expiry(token: Token) -> datetime.datetime:
    """The token's ``exp`` claim as an aware UTC datetime."""
    return datetime.datetime.fromtimestamp(token["exp"], tz=datetime.UTC)
