"""What drf-spectacular cannot infer about the REST endpoints, for ``GET /api/v1/schema/``.

drf-spectacular finds every DRF view routed in the URLconf by itself: a new endpoint (a sign-in
method added by an app) is in the schema without anything here. This module only corrects what
it would guess wrong of the token views (SimpleJWT's serializers declare their output fields
write- or read-only in ways that hide the real bodies, and the cookie variants move the refresh
token into a cookie), through drf-spectacular's extension classes (``OpenApiViewExtension``,
loaded because sessions_app.apps imports this module), and adds ``/healthz`` and ``/metrics``,
which are plain Django views (``add_plain_views``, a postprocessing hook: project/settings.py).
"""

from typing import Any

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers

_PAIR = inline_serializer("TokenPair", {"access": serializers.CharField(), "refresh": serializers.CharField()})
_ACCESS = inline_serializer("AccessToken", {"access": serializers.CharField()})
_CREDENTIALS = inline_serializer(
    "Credentials", {"username": serializers.CharField(), "password": serializers.CharField()}
)
_REFRESH = inline_serializer("RefreshToken", {"refresh": serializers.CharField()})
_DETAIL = inline_serializer(
    "ErrorDetail", {"detail": serializers.CharField(), "code": serializers.CharField(required=False)}
)
_EMPTY = inline_serializer("Empty", {})
_COOKIE = "The refresh token travels in the HttpOnly, SameSite=Strict cookie, never in the body."
_SAME_ORIGIN = OpenApiResponse(_DETAIL, description="Not from this site's own pages (Origin, Sec-Fetch-Site).")
_REFUSED = OpenApiResponse(_DETAIL, description="The token is invalid, expired, revoked, or its sign-in ended.")


def _extension(target: str, **schema: Any) -> type[OpenApiViewExtension]:
    """An OpenApiViewExtension for the view class ``target`` (dotted path) whose ``post`` has ``schema``."""

    class Extension(OpenApiViewExtension):
        target_class = target

        def view_replacement(self) -> Any:
            class Fixed(self.target):  # type: ignore[name-defined]
                @extend_schema(**schema)
                def post(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                    return super().post(request, *args, **kwargs)

            return Fixed

    Extension.__name__ = f"{target.rsplit('.', 1)[-1]}Extension"
    return Extension


TokenObtainExtension = _extension(
    "rest_framework_simplejwt.views.TokenObtainPairView",
    summary="Sign in: an access and a refresh token",
    request=_CREDENTIALS,
    responses={
        200: _PAIR,
        401: OpenApiResponse(_DETAIL, description="Wrong credentials or an inactive user."),
        429: OpenApiResponse(_DETAIL, description="Locked out after failed sign-ins (Retry-After)."),
    },
)
TokenRefreshExtension = _extension(
    "rest_framework_simplejwt.views.TokenRefreshView",
    summary="A new access token (and a rotated refresh token; the old one is revoked)",
    request=_REFRESH,
    responses={200: _PAIR, 401: _REFUSED},
)
TokenRevokeExtension = _extension(
    "rest_framework_simplejwt.views.TokenBlacklistView",
    summary="Sign out: revoke the refresh token; every socket of the user ends (logged_out, 4401)",
    request=_REFRESH,
    responses={200: _EMPTY, 401: _REFUSED},
)
CookieObtainExtension = _extension(
    "sessions_app.cookies.CookieTokenObtainView",
    summary="The pages' sign-in: the access token; the refresh token in a cookie",
    description=_COOKIE,
    request=_CREDENTIALS,
    responses={
        200: _ACCESS,
        401: OpenApiResponse(_DETAIL, description="Wrong credentials or an inactive user."),
        403: _SAME_ORIGIN,
        429: OpenApiResponse(_DETAIL, description="Locked out after failed sign-ins (Retry-After)."),
    },
)
CookieRefreshExtension = _extension(
    "sessions_app.cookies.CookieTokenRefreshView",
    summary="The pages' refresh: a new access token, the rotated refresh token in the cookie",
    description=_COOKIE + " The body is not read.",
    request=None,
    responses={200: _ACCESS, 401: _REFUSED, 403: _SAME_ORIGIN},
)
CookieRevokeExtension = _extension(
    "sessions_app.cookies.CookieTokenRevokeView",
    summary="The pages' sign-out: revoke the cookie's refresh token and delete the cookie",
    description=_COOKIE + " The body is not read.",
    request=None,
    responses={200: _EMPTY, 401: _REFUSED, 403: _SAME_ORIGIN},
)

_CHECK = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "ms": {"type": "number"}, "error": {"type": "string"}},
}
# The plain Django views (sessions_app/health.py, metrics_view.py), added by add_plain_views.
PLAIN_VIEWS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "summary": "Can this process serve sessions (database and channel layer)?",
            "tags": ["operations"],
            "security": [],
            "responses": {
                status: {
                    "description": text,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "status": {"enum": ["ok", "unavailable"]},
                                    "database": _CHECK,
                                    "channel_layer": _CHECK,
                                },
                                "required": ["status", "database", "channel_layer"],
                            }
                        }
                    },
                }
                for status, text in (("200", "Both answer."), ("503", "One of them does not answer within 2 seconds."))
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics of every server process of this host",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The Prometheus text exposition format (version 0.0.4).",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "403": {"description": "The client's address is outside SESSIONS_METRICS_NETWORKS."},
            },
        }
    },
}


def add_plain_views(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the schema with ``PLAIN_VIEWS``' paths added."""
    result.setdefault("paths", {}).update(PLAIN_VIEWS)
    return result
