"""The token API's SimpleJWT classes: sign-in (``POST /api/v1/token/``) answering a lockout with 429.

SimpleJWT's own serializer does the work (``authenticate`` with the request, so that django-axes
sees the address, then the token pair); this module only tells a lockout from bad credentials.
"""

from typing import Any

from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import serializers

from . import lockout


class TokenObtainPairSerializer(serializers.TokenObtainPairSerializer):
    """``{"username", "password"}`` -> ``{"refresh", "access"}``, as SimpleJWT's.

    Raises AuthenticationFailed (401, ``no_active_account``) for wrong credentials or an inactive
    user, and lockout.LockedOut (429, ``Retry-After``) when django-axes refused the sign-in: too
    many failures for this username or from this address (sessions_app/lockout.py).
    """

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        try:
            return super().validate(attrs)
        except AuthenticationFailed:
            if lockout.locked_out(self.context.get("request")):
                raise lockout.LockedOut() from None
            raise
