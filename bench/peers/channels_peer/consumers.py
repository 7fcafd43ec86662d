"""The consumer a Channels user writes by hand: AsyncJsonWebsocketConsumer, default JSON,
`database_sync_to_async` for the user lookup with Django's User model."""

from datetime import UTC, datetime

import jwt
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

User = get_user_model()


class SocketConsumer(AsyncJsonWebsocketConsumer):
    """First message `{"token": ...}`, then `ping` requests."""

    async def connect(self) -> None:
        """Called when the WebSocket handshake arrives: accept, authenticate on the first frame."""
        self.user = None
        await self.accept()

    async def receive_json(self, content: dict, **kwargs: object) -> None:
        """Called with each decoded frame."""
        if self.user is None:
            await self.authenticate(content)
        elif content.get("state") == "ping":
            now = timezone.now().isoformat().replace("+00:00", "Z")
            await self.send_json({"state": "ping", "id": content.get("id"), "data": {"server_time": now}})
        else:
            await self.send_json({"state": "error", "code": "unknown_state", "error": "Unknown state."})

    async def authenticate(self, content: dict) -> None:
        """Check the access token of the first frame and greet the user, or close with 4401."""
        try:
            claims = jwt.decode(content["token"], settings.SECRET_KEY, algorithms=["HS256"])
            if claims.get("token_type") != "access":
                raise ValueError("not an access token")
            self.user = await self.get_user(int(claims["user_id"]))
        except (ValueError, KeyError, TypeError, jwt.PyJWTError):
            self.user = None
        if self.user is None:
            await self.send_json({"state": "error", "code": "not_authenticated", "error": "Invalid token."})
            await self.close(code=4401)
            return
        expires = datetime.fromtimestamp(claims["exp"], UTC)
        data = {
            "user": {"id": self.user.pk, "username": self.user.username},
            "protocol": 1,
            "token_expires_at": expires.isoformat().replace("+00:00", "Z"),
        }
        await self.send_json({"state": "initialised", "data": data})

    @database_sync_to_async
    def get_user(self, user_id: int) -> User | None:
        """Return the active user `user_id`, or None."""
        return User.objects.filter(pk=user_id, is_active=True).first()
