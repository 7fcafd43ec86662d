"""HTTP endpoints of two-factor sign-in (django-otp; sessions_app/second_factor.py and
sessions_app/otp_devices.py hold the rules). Thin DRF views: validate, call one service, answer.

The sign-in's second step (no access token; the ticket proves the first factor):

- ``POST /api/v1/login/otp/`` ``{"ticket", "code"}`` -> ``{"refresh", "access"}``: for a ticket
  of the JSON token API (``/api/v1/token/``).
- ``POST /api/v1/token/cookie/otp/`` ``{"ticket", "code"}`` -> ``{"access"}``, the refresh token
  in the pages' cookie (sessions_app/cookies.py): for a ticket of ``/api/v1/token/cookie/``; only
  from this site's own pages (``SameOriginOnly``).

Refusals: 400 (a field missing or too long), 401 ``invalid_ticket`` or ``invalid_code``, 429
``otp_throttled`` or ``locked_out`` with ``Retry-After``.

The signed-in user's device (an access token, ``Authorization: Bearer``; 401 without):

- ``GET /api/v1/otp/`` -> ``{"enrolled", "pending", "recovery_codes_left"}``.
- ``POST /api/v1/otp/enrol/`` -> ``{"otpauth_uri", "secret", "qr_svg"}``: a pending device,
  its key shown this once; 409 ``otp_enrolled`` when one is confirmed already.
- ``POST /api/v1/otp/confirm/`` ``{"code"}`` (from the pending device) -> ``{"recovery_codes"}``,
  shown this once; every sign-in of the user ends (otp_devices, "What a change ends").
- ``POST /api/v1/otp/remove/`` ``{"code"}`` (TOTP or recovery) -> ``{}``; every sign-in ends.
- ``POST /api/v1/otp/recovery-codes/`` ``{"code"}`` -> ``{"recovery_codes"}``, the old ones void.

Answers that carry a secret (key, recovery codes, tokens) are sent with ``Cache-Control: no-store``.
"""

import time
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import otp_devices, second_factor
from .conf import app_settings
from .cookies import SameOriginOnly, refresh_to_cookie
from .otp_errors import SignInTooOld
from .tokens import AUTH_TIME_CLAIM


class CodeSerializer(serializers.Serializer):
    """``{"code"}``: a 6-digit TOTP code or a recovery code (spaces and dashes ignored)."""

    code = serializers.CharField(max_length=32, trim_whitespace=True)


class TicketCodeSerializer(CodeSerializer):
    """``{"ticket", "code"}``."""

    ticket = serializers.CharField(max_length=128)


_DETAIL = inline_serializer(
    "OtpErrorDetail", {"detail": serializers.CharField(), "code": serializers.CharField(required=False)}
)
_SIGN_IN_REFUSED = {
    400: OpenApiResponse(_DETAIL, description="A field missing or too long."),
    401: OpenApiResponse(_DETAIL, description="invalid_ticket or invalid_code."),
    429: OpenApiResponse(_DETAIL, description="otp_throttled or locked_out (Retry-After)."),
}
_CODE_REFUSED = {
    400: OpenApiResponse(_DETAIL, description="A field missing or too long."),
    401: OpenApiResponse(_DETAIL, description="No valid access token, or invalid_code."),
    429: OpenApiResponse(_DETAIL, description="otp_throttled or locked_out (Retry-After)."),
}
_RECOVERY = inline_serializer("RecoveryCodes", {"recovery_codes": serializers.ListField(child=serializers.CharField())})


def recent_sign_in(request: Request) -> None:
    """Raise SignInTooOld unless the request's access token comes from a sign-in (password or
    link, and code) of the last ``SESSIONS_OTP_ENROL_SIGN_IN_AGE`` seconds: its ``auth_time``
    (tokens.AUTH_TIME_CLAIM), which refreshing keeps."""
    auth_time = getattr(request.auth, "payload", {}).get(AUTH_TIME_CLAIM)
    if type(auth_time) is not int or time.time() - auth_time > app_settings.OTP_ENROL_SIGN_IN_AGE:
        raise SignInTooOld()


def no_store(data: Any) -> Response:
    """A 200 answer that no cache keeps."""
    return Response(data, headers={"Cache-Control": "no-store"})


class OtpSignInView(APIView):
    """``POST /api/v1/login/otp/``: a JSON token API ticket and a code -> the token pair."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    cookie = False

    def get_authenticate_header(self, request: Request) -> str:
        # As SimpleJWT's token views: a 401 needs WWW-Authenticate (else DRF answers 403).
        return 'Bearer realm="api"'

    @extend_schema(
        summary="Two-factor sign-in, second step: the ticket and a code -> the token pair",
        request=TicketCodeSerializer,
        responses={
            200: inline_serializer(
                "OtpTokenPair", {"access": serializers.CharField(), "refresh": serializers.CharField()}
            ),
            **_SIGN_IN_REFUSED,
        },
    )
    def post(self, request: Request) -> Response:
        fields = TicketCodeSerializer(data=request.data)
        fields.is_valid(raise_exception=True)
        pair = second_factor.complete(
            ticket=fields.validated_data["ticket"],
            code=fields.validated_data["code"],
            request=request,
            cookie=self.cookie,
        )
        return no_store(pair)


class CookieOtpSignInView(OtpSignInView):
    """``POST /api/v1/token/cookie/otp/``: a cookie sign-in's ticket and a code -> ``{"access"}``
    and the refresh cookie."""

    permission_classes = (SameOriginOnly,)
    cookie = True

    @extend_schema(
        summary="The pages' second step: the ticket and a code -> the access token; the refresh token in the cookie",
        request=TicketCodeSerializer,
        responses={200: inline_serializer("OtpAccessToken", {"access": serializers.CharField()}), **_SIGN_IN_REFUSED},
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        refresh_to_cookie(request, response)
        return super().finalize_response(request, response, *args, **kwargs)


class OtpStatusView(APIView):
    """``GET /api/v1/otp/``: the signed-in user's two-factor state."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(
        summary="The signed-in user's two-factor state",
        responses={
            200: inline_serializer(
                "OtpStatus",
                {
                    "enrolled": serializers.BooleanField(),
                    "pending": serializers.BooleanField(),
                    "recovery_codes_left": serializers.IntegerField(min_value=0),
                },
            ),
            401: OpenApiResponse(_DETAIL, description="No valid access token."),
        },
    )
    def get(self, request: Request) -> Response:
        return Response(otp_devices.status_for(request.user))


class OtpEnrolView(APIView):
    """``POST /api/v1/otp/enrol/``: start an enrolment (a pending TOTP device)."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(
        summary="Start an enrolment: a pending TOTP device, its key shown this once",
        request=None,
        responses={
            200: inline_serializer(
                "OtpEnrolment",
                {
                    "otpauth_uri": serializers.CharField(),
                    "secret": serializers.CharField(),
                    "qr_svg": serializers.CharField(),
                },
            ),
            401: OpenApiResponse(_DETAIL, description="No valid access token."),
            403: OpenApiResponse(
                _DETAIL, description="sign_in_again: the sign-in is older than SESSIONS_OTP_ENROL_SIGN_IN_AGE."
            ),
            409: OpenApiResponse(_DETAIL, description="otp_enrolled: a confirmed device exists."),
        },
    )
    def post(self, request: Request) -> Response:
        recent_sign_in(request)
        return no_store(otp_devices.enrolment_start(request=request, user=request.user))


class _CodeView(APIView):
    permission_classes = (IsAuthenticated,)

    def code(self, request: Request) -> str:
        fields = CodeSerializer(data=request.data)
        fields.is_valid(raise_exception=True)
        return fields.validated_data["code"]


class OtpConfirmView(_CodeView):
    """``POST /api/v1/otp/confirm/``: confirm the pending device with a code from it."""

    @extend_schema(
        summary="Confirm the pending device with a code from it; the recovery codes, shown once",
        request=CodeSerializer,
        responses={200: _RECOVERY, **_CODE_REFUSED},
    )
    def post(self, request: Request) -> Response:
        recent_sign_in(request)
        return no_store(otp_devices.enrolment_confirm(request=request, user=request.user, code=self.code(request)))


class OtpRemoveView(_CodeView):
    """``POST /api/v1/otp/remove/``: remove the device and the recovery codes, given a fresh code."""

    @extend_schema(
        summary="Turn two-factor off, given a fresh code; every sign-in of the user ends",
        request=CodeSerializer,
        responses={200: inline_serializer("OtpRemoved", {}), **_CODE_REFUSED},
    )
    def post(self, request: Request) -> Response:
        otp_devices.remove(request=request, user=request.user, code=self.code(request))
        return Response({})


class RecoveryCodesView(_CodeView):
    """``POST /api/v1/otp/recovery-codes/``: new recovery codes, given a fresh code."""

    @extend_schema(
        summary="New recovery codes, given a fresh code (the old ones void)",
        request=CodeSerializer,
        responses={200: _RECOVERY, **_CODE_REFUSED},
    )
    def post(self, request: Request) -> Response:
        return no_store(otp_devices.recovery_regenerate(request=request, user=request.user, code=self.code(request)))
