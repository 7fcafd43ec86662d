"""Test helpers: users, tokens, and a communicator that connects, authenticates and disconnects."""

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.tokens import AccessToken

from project.asgi import application
from sessions_app.tokens import LoginRefreshToken

PATH = "/api/v1/socket"
_ids = itertools.count(1)


@database_sync_to_async
def make_user(username: str, *, active: bool = True) -> Any:
    """Create (or fetch) a user; returns the instance."""
    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"is_active": active})
    return user


def access_for(user: Any, *, lifetime: Any = None) -> str:
    """A real SimpleJWT access token for ``user`` (optionally with another lifetime, a timedelta)."""
    token = AccessToken.for_user(user)
    if lifetime is not None:
        token.set_exp(lifetime=lifetime)
    return str(token)


def refresh_for(user: Any) -> str:
    """A refresh token for ``user`` as the token API makes it (``tokens.LoginRefreshToken``: tied to
    the password, with the sign-in's ``auth_time``)."""
    return str(LoginRefreshToken.for_user(user))


class Client:
    """A WebsocketCommunicator through ``project.asgi.application`` with protocol helpers."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.pushes: list[dict[str, Any]] = []
        self.user: dict[str, Any] | None = None

    async def send(self, frame: Any) -> None:
        await self.ws.send_json_to(frame)

    async def send_text(self, text: str) -> None:
        await self.ws.send_to(text_data=text)

    async def recv(self, timeout: float = 2) -> dict[str, Any]:
        return await self.ws.receive_json_from(timeout=timeout)

    async def request(self, state: str, data: Any = None, timeout: float = 2, **extra: Any) -> dict[str, Any]:
        """Send ``{state, data, id}``; return the frame carrying that id (pushes on the way are kept)."""
        rid = f"t{next(_ids)}"
        frame = {"state": state, "id": rid, **extra}
        if data is not None:
            frame["data"] = data
        await self.send(frame)
        while True:
            msg = await self.recv(timeout)
            if msg.get("id") == rid:
                return msg
            self.pushes.append(msg)

    async def ok(self, state: str, data: Any = None, **extra: Any) -> dict[str, Any]:
        """A request that must succeed; returns the reply's data."""
        reply = await self.request(state, data, **extra)
        assert reply["state"] == state, reply
        return reply["data"]

    async def push(self, state: str, timeout: float = 2) -> dict[str, Any]:
        """The next push of ``state`` (earlier ones are kept)."""
        for index, msg in enumerate(self.pushes):
            if msg["state"] == state:
                return self.pushes.pop(index)
        while True:
            msg = await self.recv(timeout)
            if msg["state"] == state and "id" not in msg:
                return msg
            self.pushes.append(msg)

    async def closed(self, timeout: float = 2) -> int:
        """Wait for the server's close; return its code (frames on the way are kept)."""
        while True:
            output = await self.ws.receive_output(timeout)
            if output["type"] == "websocket.close":
                return output.get("code", 1000)
            self.pushes.append(__import__("json").loads(output["text"]))

    async def nothing(self, timeout: float = 0.2) -> bool:
        """True when the server sends nothing within ``timeout`` seconds."""
        return await self.ws.receive_nothing(timeout=timeout)


async def open_socket(*, headers: list[tuple[bytes, bytes]] | None = None, path: str = PATH) -> Client:
    """Open a socket (not yet authenticated)."""
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    communicator.scope["client"] = ["127.0.0.1", 50000]  # as daphne sets it for a TCP client
    connected, _ = await communicator.connect()
    assert connected
    return Client(communicator)


@contextlib.asynccontextmanager
async def connected(user: Any, *, token: str | None = None) -> AsyncIterator[Client]:
    """Connect, authenticate as ``user`` and always disconnect."""
    client = await open_socket()
    try:
        await client.send({"token": token or access_for(user)})
        first = await client.recv()
        assert first["state"] == "initialised", first
        client.user = first["data"]["user"]
        yield client
    finally:
        await client.ws.disconnect()
