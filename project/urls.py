"""HTTP routes: the admin, the token API (JSON, and the pages' cookie variant), sign-in by email
link, health, metrics, and the browser pages."""

from django.contrib import admin
from django.urls import include, path
from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView

from sessions_app.cookies import CookieTokenObtainView, CookieTokenRefreshView, CookieTokenRevokeView
from sessions_app.health import healthz
from sessions_app.magic_views import MagicLinkClaimView, MagicLinkRequestView
from sessions_app.metrics_view import metrics_endpoint

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/token/", TokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("api/v1/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("api/v1/token/revoke/", TokenBlacklistView.as_view(), name="token_revoke"),
    # The browser pages' sign-in: the refresh token in an HttpOnly cookie (sessions_app/cookies.py).
    path("api/v1/token/cookie/", CookieTokenObtainView.as_view(), name="token_cookie_obtain"),
    path("api/v1/token/cookie/refresh/", CookieTokenRefreshView.as_view(), name="token_cookie_refresh"),
    path("api/v1/token/cookie/revoke/", CookieTokenRevokeView.as_view(), name="token_cookie_revoke"),
    # Sign-in by email link (sessions_app/magiclinks.py).
    path("api/v1/login/magic/", MagicLinkRequestView.as_view(), name="magic_link_request"),
    path("api/v1/login/magic/claim/", MagicLinkClaimView.as_view(), name="magic_link_claim"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_endpoint, name="metrics"),
    path("", include("sessions_app.page_urls")),
]
