"""The consumer a Channels user writes by hand: AsyncJsonWebsocketConsumer, default JSON,
`database_sync_to_async` for the user lookup with Django's User model, and for the fan-out the
tutorial's groups: `group_add` on join, `group_send` on patch, a `session_patched` handler.

Sessions are not stored: `create` mints a group id, `patch` trusts the client's version (the reply
is that version plus one) and applies nothing. What the fan-out measures is the delivery of one
`group_send` to every member, the part a Channels developer gets from Channels.
"""

import uuid
from datetime import UTC, datetime

import jwt
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

User = get_user_model()


class SocketConsumer(AsyncJsonWebsocketConsumer):
    """First message `{"token": ...}`, then `ping`, `create`, `invite`, `join` and `patch`."""

    user = None
    session: str | None = None

    async def connect(self) -> None:
        """Called when the WebSocket handshake arrives: accept, authenticate on the first frame."""
        self.user = None
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Called when the socket closes: leave the session's group."""
        if self.session is not None:
            await self.channel_layer.group_discard(group_name(self.session), self.channel_name)
            self.session = None

    async def receive_json(self, content: dict, **kwargs: object) -> None:
        """Called with each decoded frame."""
        state = content.get("state")
        if self.user is None:
            await self.authenticate(content)
        elif state == "ping":
            now = timezone.now().isoformat().replace("+00:00", "Z")
            await self.send_json({"state": "ping", "id": content.get("id"), "data": {"server_time": now}})
        elif state == "create":
            await self.join(content, str(uuid.uuid4()))
        elif state == "join":
            await self.join(content, content.get("data", {}).get("session"))
        elif state == "patch":
            await self.patch(content)
        elif state == "invite":
            await self.reply(content, {"members": []})
        else:
            await self.error(content, "unknown_state", "Unknown state.")

    # Client states

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

    async def join(self, content: dict, session: object) -> None:
        """Join the group of `session` (leaving the one joined before); reply a minimal snapshot."""
        try:
            session = str(uuid.UUID(str(session)))
        except ValueError:
            await self.error(content, "invalid_data", "Not a session id.")
            return
        if self.session not in (None, session):
            await self.channel_layer.group_discard(group_name(self.session), self.channel_name)
        self.session = session
        await self.channel_layer.group_add(group_name(session), self.channel_name)
        data = content.get("data", {})
        await self.reply(content, {"id": session, "title": data.get("title", ""), "version": 0, "data": {}})

    async def patch(self, content: dict) -> None:
        """Send the patch to the session's group, then reply its new version to the sender."""
        data = content.get("data", {})
        if self.session is None:
            await self.error(content, "not_joined", "Join a session first.")
            return
        try:
            version = int(data["version"]) + 1
        except (KeyError, TypeError, ValueError):
            await self.error(content, "invalid_data", "A patch needs a version.")
            return
        event = {
            "type": "session.patched",
            "session": self.session,
            "version": version,
            "ops": data.get("ops", []),
            "by": {"id": self.user.pk, "username": self.user.username},
            "sender": self.channel_name,
        }
        await self.channel_layer.group_send(group_name(self.session), event)
        await self.reply(content, {"version": version})

    # Channel layer handlers

    async def session_patched(self, event: dict) -> None:
        """Called for each `session.patched` of the group: push it, except to its sender."""
        if event["sender"] == self.channel_name:
            return
        data = {key: event[key] for key in ("session", "version", "ops", "by")}
        await self.send_json({"state": "patched", "data": data})

    # Helpers

    async def reply(self, content: dict, data: dict) -> None:
        """Send the reply to the request `content`."""
        await self.send_json({"state": content.get("state"), "id": content.get("id"), "data": data})

    async def error(self, content: dict, code: str, text: str) -> None:
        """Send an error frame for the request `content`."""
        await self.send_json({"state": "error", "code": code, "error": text, "id": content.get("id")})

    @database_sync_to_async
    def get_user(self, user_id: int) -> User | None:
        """Return the active user `user_id`, or None."""
        return User.objects.filter(pk=user_id, is_active=True).first()


def group_name(session: str) -> str:
    """The channel-layer group of `session` (ASCII, under 100 characters, as Channels requires)."""
    return f"session.{session}"
