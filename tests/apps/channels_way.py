"""States written the way the Channels documentation teaches, served by a real daphne in tests.

``python -m daphne tests.apps.channels_way:application`` serves this project with these states
added: a handler joins a group with ``channel_layer.group_add(group, channel_name)``, another
sends to it with ``group_send`` to a typed handler (a method of the consumer subclass, by
Channels' type-to-method rule, or a ``registry.message`` handler), and ``channel_layer.send``
reaches one connection by its ``channel_name``.
"""

from typing import Any

from django.core.asgi import get_asgi_application
from django.urls import path
from rest_framework import serializers

django_asgi_app = get_asgi_application()

from sessions_app.consumers import SessionConsumer  # noqa: E402
from sessions_app.registry import Connection, message, push_state, state  # noqa: E402
from sessions_app.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from sessions_app.security import origin_validator  # noqa: E402


class RoomSchema(serializers.Serializer):
    room = serializers.RegexField(r"^[a-z0-9]{1,20}$")


class SaySchema(RoomSchema):
    text = serializers.CharField(max_length=200)


class DirectSchema(serializers.Serializer):
    to = serializers.CharField(max_length=99)
    text = serializers.CharField(max_length=200)


class JoinedReply(serializers.Serializer):
    room = serializers.CharField()
    channel = serializers.CharField(help_text="This connection's channel name, for ``direct``.")


class LobbyPush(serializers.Serializer):
    room = serializers.CharField()
    text = serializers.CharField()
    # ``from`` is a Python keyword: declared below.


LobbyPush._declared_fields["from"] = serializers.CharField()

# The replies and pushes of these states, for the AsyncAPI document (sessions_app/asyncapi.py);
# ``lobby_say``'s reply is left undeclared, as an app may (``manage.py check`` warns: W001).
EMPTY = {"type": "object", "maxProperties": 0}
push_state("lobby", payload=LobbyPush, audience="the room's members", description="A message said in a room.")
push_state(
    "direct",
    payload={"type": "object", "properties": {"text": {"type": "string"}, "from": {"type": "string"}}},
    audience="one connection",
    description="A message sent to this connection's channel name.",
)


@state("lobby_join", schema=RoomSchema, reply=JoinedReply)
async def lobby_join(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """Join a room's group; the reply carries this connection's channel name."""
    await conn.channel_layer.group_add(f"lobby.{data['room']}", conn.channel_name)
    return {"room": data["room"], "channel": conn.channel_name}


@state("lobby_leave", schema=RoomSchema, reply=EMPTY)
async def lobby_leave(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    await conn.channel_layer.group_discard(f"lobby.{data['room']}", conn.channel_name)
    return {}


@state("lobby_say", schema=SaySchema)
async def lobby_say(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    event = {"type": "lobby.message", "room": data["room"], "text": data["text"], "from": conn.user["username"]}
    await conn.channel_layer.group_send(f"lobby.{data['room']}", event)
    return {}


@state("direct", schema=DirectSchema, reply=EMPTY)
async def direct(conn: Connection, data: dict[str, Any]) -> dict[str, Any]:
    """``channel_layer.send`` to one connection, named by its channel name."""
    await conn.channel_layer.send(
        data["to"], {"type": "direct.message", "text": data["text"], "from": conn.user["username"]}
    )
    return {}


@message("direct.message")
async def direct_message(conn: Connection, event: dict[str, Any]) -> None:
    conn.send_frame({"state": "direct", "data": {"text": event["text"], "from": event["from"]}})


class LobbyConsumer(SessionConsumer):
    """The session consumer with a typed handler method, as the Channels tutorial writes one."""

    async def lobby_message(self, event: dict[str, Any]) -> None:
        """Called for each ``lobby.message`` sent to a group this connection joined."""
        await self.send_json({"state": "lobby", "data": {k: event[k] for k in ("room", "text", "from")}})


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": origin_validator(URLRouter([path("api/v1/socket", LobbyConsumer.as_asgi())])),
    }
)
