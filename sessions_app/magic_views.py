"""The HTTP side of sign-in by email link (the rules in sessions_app/magiclinks.py):

- ``POST /api/v1/login/magic/`` ``{"login": "<username or email>"}`` -> 202 ``{"detail"}``, the
  same for every ``login``, with the browser's nonce cookie; 429 with ``Retry-After`` past the
  throttle; 400 for a missing or too long ``login``.
- ``POST /api/v1/login/magic/claim/`` ``{"link": "<id>", "token": "<sesame token>"}`` with the
  nonce cookie -> 200 ``{"access", "username"}`` and the refresh token in the pages' cookie (as
  ``/api/v1/token/cookie/``), or, for a user with two-factor sign-in on, 200 ``{"otp_required":
  true, "ticket", "expires_in", "username"}`` and no token: the code and the ticket then go to
  ``POST /api/v1/token/cookie/otp/`` (sessions_app/second_factor.py); 401 ``{"detail", "code"}``
  with ``code`` ``link_invalid``, ``link_expired`` or ``link_used``; 403 ``other_browser`` (the
  link was asked for in another browser, or this one lost its cookie).

Both only from this site's own pages (``cookies.SameOriginOnly``: 403 otherwise), with no
authentication class: an ``Authorization`` header is not read.
"""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import magiclinks
from .cookies import SameOriginOnly, own_origin

REQUESTED = _(
    "If this username or email belongs to an account with an email address, a sign-in link is on its way "
    "there. Open it in this browser."
)

REFUSALS = {
    magiclinks.INVALID: (status.HTTP_401_UNAUTHORIZED, _("This sign-in link is not valid. Ask for a new one.")),
    magiclinks.EXPIRED: (status.HTTP_401_UNAUTHORIZED, _("This sign-in link has expired. Ask for a new one.")),
    magiclinks.USED: (status.HTTP_401_UNAUTHORIZED, _("This sign-in link was already used. Ask for a new one.")),
    magiclinks.OTHER_BROWSER: (
        status.HTTP_403_FORBIDDEN,
        _("This sign-in link was asked for in another browser. Open it in that browser, or ask for a new link here."),
    ),
}


class LinkRequestSerializer(serializers.Serializer):
    """``{"login"}``: a username or an email address."""

    login = serializers.CharField(max_length=magiclinks.MAX_LOGIN_LENGTH)


class LinkClaimSerializer(serializers.Serializer):
    """``{"link", "token"}``: the two parts of the link's fragment."""

    link = serializers.UUIDField()
    token = serializers.CharField(max_length=1000, trim_whitespace=False)


_DETAIL = inline_serializer(
    "LinkErrorDetail", {"detail": serializers.CharField(), "code": serializers.CharField(required=False)}
)
_SAME_ORIGIN = OpenApiResponse(_DETAIL, description="Not from this site's own pages (Origin, Sec-Fetch-Site).")


class MagicLinkRequestView(APIView):
    """``POST /api/v1/login/magic/``: ask for a sign-in link (module docstring)."""

    authentication_classes = ()
    permission_classes = (SameOriginOnly,)

    @extend_schema(
        summary="Email me a sign-in link (the same answer whether or not the account exists)",
        description="Sets the browser's nonce cookie (HttpOnly, SameSite=Strict) that the link is bound to.",
        request=LinkRequestSerializer,
        responses={
            202: inline_serializer("LinkRequested", {"detail": serializers.CharField()}),
            400: OpenApiResponse(_DETAIL, description="login missing or too long."),
            403: _SAME_ORIGIN,
            429: OpenApiResponse(_DETAIL, description="Too many links asked for (Retry-After)."),
        },
    )
    def post(self, request: Request) -> Response:
        body = LinkRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            requested = magiclinks.request_link(
                login=body.validated_data["login"],
                address=magiclinks.client_address(request),
                nonce=magiclinks.nonce_from_cookie(request),
                origin=own_origin(request),
            )
        except magiclinks.Throttled as throttled:
            raise exceptions.Throttled(
                wait=throttled.wait, detail=str(_("Too many sign-in links asked for; try again later."))
            ) from None
        response = Response({"detail": REQUESTED}, status=status.HTTP_202_ACCEPTED)
        magiclinks.set_nonce_cookie(response, request, requested.nonce)
        return response


class MagicLinkClaimView(APIView):
    """``POST /api/v1/login/magic/claim/``: exchange a link for tokens, in the browser that asked."""

    authentication_classes = ()
    permission_classes = (SameOriginOnly,)

    @extend_schema(
        summary="Claim a sign-in link in the browser that asked: the access token (or a two-factor ticket)",
        description="The refresh token goes to the pages' HttpOnly cookie. A user with two-factor sign-in "
        "gets a ticket for POST /api/v1/token/cookie/otp/ instead of tokens.",
        request=LinkClaimSerializer,
        responses={
            200: inline_serializer(
                "LinkClaimed",
                {
                    "access": serializers.CharField(required=False),
                    "username": serializers.CharField(),
                    "otp_required": serializers.BooleanField(required=False),
                    "ticket": serializers.CharField(required=False),
                    "expires_in": serializers.IntegerField(required=False, help_text="Seconds."),
                },
            ),
            400: OpenApiResponse(_DETAIL, description="A field missing or malformed."),
            401: OpenApiResponse(_DETAIL, description="link_invalid, link_expired or link_used."),
            403: OpenApiResponse(_DETAIL, description="other_browser, or not from this site's own pages."),
        },
    )
    def post(self, request: Request) -> Response:
        body = LinkClaimSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            user = magiclinks.claim_link(
                link_id=body.validated_data["link"],
                token=body.validated_data["token"],
                nonce=magiclinks.nonce_from_cookie(request),
                address=magiclinks.client_address(request),
            )
        except magiclinks.LinkRefused as refused:
            answer, detail = REFUSALS[refused.code]
            return Response({"detail": detail, "code": refused.code}, status=answer)
        response = magiclinks.complete_sign_in(request, user)
        magiclinks.delete_nonce_cookie(response, request)
        return response
