"""HTTP routes: the admin, the token API (JSON, and the pages' cookie variant), the API's contract
(OpenAPI, AsyncAPI, their page), health, metrics, and the browser pages."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView

from sessions_app.contract_views import SchemaView, api_docs, asyncapi_json
from sessions_app.cookies import CookieTokenObtainView, CookieTokenRefreshView, CookieTokenRevokeView
from sessions_app.health import healthz
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
    # The contract (sessions_app/contract_views.py): OpenAPI of every DRF view here, AsyncAPI of the socket.
    path("api/v1/schema/", SchemaView.as_view(), name="openapi_schema"),
    path("api/v1/socket/asyncapi.json", asyncapi_json, name="asyncapi"),
    path("api/v1/docs/", api_docs, name="api_docs"),
    path(
        "api/v1/docs/rest/",
        SpectacularSwaggerSplitView.as_view(url_name="openapi_schema", template_name="api/swagger_ui.html"),
        name="swagger_ui",
    ),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_endpoint, name="metrics"),
    path("", include("sessions_app.page_urls")),
]
