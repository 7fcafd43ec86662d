"""Routes of the browser pages; the project includes them at the root path."""

from django.urls import path

from sessions_app.pages import HomePageView, ServiceWorkerView, SessionPageView

urlpatterns = [
    path("", HomePageView.as_view(), name="home"),
    path("sessions/<uuid:session_id>/", SessionPageView.as_view(), name="session"),
    path("sw.js", ServiceWorkerView.as_view(), name="service_worker"),
]
