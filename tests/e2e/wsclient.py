"""A plain WebSocket client of the protocol (no browser): another user editing, or test setup."""

import contextlib
import itertools
import json
import urllib.request
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.e2e.server import PASSWORD

SOCKET_PATH = "/api/v1/socket"
_ids = itertools.count(1)


def obtain_pair(http_url: str, username: str, password: str = PASSWORD) -> dict[str, str]:
    """POST /api/v1/token/ and return {"access", "refresh"}."""
    request = urllib.request.Request(  # noqa: S310 - a http:// URL of the test server
        f"{http_url}/api/v1/token/",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def post_status(url: str, body: dict[str, Any]) -> int:
    """POST JSON and return the HTTP status (errors included)."""
    request = urllib.request.Request(  # noqa: S310 - a http:// URL of the test server
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class ProtocolClient:
    """Connects, authenticates, and sends requests whose replies are matched on ``id``."""

    def __init__(self, ws_url: str, http_url: str, username: str) -> None:
        self._stack = contextlib.ExitStack()  # connect() is a context manager (websockets >= 17.1)
        self.ws: ClientConnection = self._stack.enter_context(connect(ws_url + SOCKET_PATH, open_timeout=10))
        self.pushes: list[dict[str, Any]] = []
        self.ws.send(json.dumps({"token": obtain_pair(http_url, username)["access"]}))
        first = self.recv()
        assert first["state"] == "initialised", first
        self.user = first["data"]["user"]

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))

    def request(self, state: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request; return the reply's data (pushes seen meanwhile go to ``pushes``)."""
        rid = f"e2e-{next(_ids)}"
        self.ws.send(json.dumps({"state": state, "data": data or {}, "id": rid}))
        while True:
            frame = self.recv()
            if frame.get("id") != rid:
                self.pushes.append(frame)
                continue
            assert frame["state"] == state, frame
            return frame["data"]

    def patch(self, session: str, ops: list[dict[str, Any]]) -> int:
        """Patch on the current version (join with since=None to read it); return the new version."""
        version = self.request("join", {"session": session})["version"]
        return self.request("patch", {"version": version, "ops": ops})["version"]

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> "ProtocolClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
