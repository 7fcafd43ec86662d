"""WebSocket routes."""

from django.urls import path

from .consumers import SessionConsumer

websocket_urlpatterns = [
    path("api/v1/socket", SessionConsumer.as_asgi()),
]
