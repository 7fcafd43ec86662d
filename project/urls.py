"""HTTP routes: the admin, the token API (JSON, and the pages' cookie variant), sign-in by email
link, two-factor sign-in, the API's contract (OpenAPI, AsyncAPI, their page), health, metrics, and
the browser pages."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView

from sessions_app.contract_views import SchemaView, api_docs, asyncapi_json
from sessions_app.cookies import CookieTokenObtainView, CookieTokenRefreshView, CookieTokenRevokeView
from sessions_app.health import healthz
from sessions_app.magic_views import MagicLinkClaimView, MagicLinkRequestView
from sessions_app.metrics_view import metrics_endpoint
from sessions_app.otp_views import (
    CookieOtpSignInView,
    OtpConfirmView,
    OtpEnrolView,
    OtpRemoveView,
    OtpSignInView,
    OtpStatusView,
    RecoveryCodesView,
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/token/", TokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("api/v1/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("api/v1/token/revoke/", TokenBlacklistView.as_view(), name="token_revoke"),
    # The browser pages' sign-in: the refresh token in an HttpOnly cookie (sessions_app/cookies.py).
    path("api/v1/token/cookie/", CookieTokenObtainView.as_view(), name="token_cookie_obtain"),
    path("api/v1/token/cookie/refresh/", CookieTokenRefreshView.as_view(), name="token_cookie_refresh"),
    path("api/v1/token/cookie/revoke/", CookieTokenRevokeView.as_view(), name="token_cookie_revoke"),
    # The contract (sessions_app/contract_views.py): OpenAPI of every DRF view here, AsyncAPI of the socket.
    path("api/v1/schema/", SchemaView.as_view(), name="openapi_schema"),
    path("api/v1/socket/asyncapi.json", asyncapi_json, name="asyncapi"),
    path("api/v1/docs/", api_docs, name="api_docs"),
    path(
        "api/v1/docs/rest/",
        SpectacularSwaggerSplitView.as_view(url_name="openapi_schema", template_name="api/swagger_ui.html"),
        name="swagger_ui",
    ),
    # Two-factor sign-in (sessions_app/otp_views.py): the sign-in's second step, and the user's device.
    path("api/v1/login/otp/", OtpSignInView.as_view(), name="login_otp"),
    path("api/v1/token/cookie/otp/", CookieOtpSignInView.as_view(), name="token_cookie_otp"),
    path("api/v1/otp/", OtpStatusView.as_view(), name="otp_status"),
    path("api/v1/otp/enrol/", OtpEnrolView.as_view(), name="otp_enrol"),
    path("api/v1/otp/confirm/", OtpConfirmView.as_view(), name="otp_confirm"),
    path("api/v1/otp/remove/", OtpRemoveView.as_view(), name="otp_remove"),
    path("api/v1/otp/recovery-codes/", RecoveryCodesView.as_view(), name="otp_recovery_codes"),
    # Sign-in by email link (sessions_app/magiclinks.py).
    path("api/v1/login/magic/", MagicLinkRequestView.as_view(), name="magic_link_request"),
    path("api/v1/login/magic/claim/", MagicLinkClaimView.as_view(), name="magic_link_claim"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_endpoint, name="metrics"),
    path("", include("sessions_app.page_urls")),
]
