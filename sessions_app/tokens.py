"""The token API's sign-out, ``POST /api/v1/token/revoke/``: SimpleJWT's blacklist, then the
user's sockets end on every process (``not_authenticated``, ``data.reason`` ``logged_out``, 4401).

Installed as ``SIMPLE_JWT["TOKEN_BLACKLIST_SERIALIZER"]``, so SimpleJWT's own ``TokenBlacklistView``
serves it. Every socket of the user ends, not only those of the login that signed out: an access
token carries no trace of the refresh token it came from (SimpleJWT gives every rotated refresh
token a new ``jti``), so the server cannot tell them apart. The user's other logins refresh their
tokens and reconnect at once (the JavaScript client does, on 4401); the one that signed out cannot.
"""

from typing import Any

from rest_framework_simplejwt.serializers import TokenBlacklistSerializer

from . import events, protocol


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
