"""The protocol client of the tests, over a real socket to a live server (tests/live.py starts them).

``Client`` speaks the protocol with the ``websockets`` library, like ../shared/conformance/wsclient.py:
requests matched to their replies by ``id``, pushes kept aside until asked for, the close code.
``BlockingClient`` is the same client for synchronous callers (the browser tests). The
communicator tests use tests/utils.py instead (no socket: Channels' ``WebsocketCommunicator``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.live import SOCKET_PATH, TIMEOUT

_ids = itertools.count(1)


class Closed(Exception):
    """The server closed the connection (``code``: the close code, None without a close frame)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed with code {code}")
        self.code = code


class Client:
    """A protocol client over a real socket; pushes seen while waiting for replies go to ``pushes``."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self.user: dict[str, Any] | None = None

    async def send(self, frame: Any) -> None:
        try:
            await self.ws.send(json.dumps(frame))
        except ConnectionClosed as exc:
            raise Closed(exc.rcvd.code if exc.rcvd else None) from None

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            raise Closed(exc.rcvd.code if exc.rcvd else None) from None
        return json.loads(raw)

    async def request(self, state: str, data: Any = None, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Send ``{state, data, id}``; return the reply or error with that id."""
        rid = f"r{next(_ids)}"
        frame: dict[str, Any] = {"state": state, "id": rid}
        if data is not None:
            frame["data"] = data
        await self.send(frame)
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            if msg.get("id") == rid:
                return msg
            self.pushes.append(msg)

    async def ok(self, state: str, data: Any = None, timeout: float = TIMEOUT) -> dict[str, Any]:
        """A request that must succeed; returns its reply data."""
        reply = await self.request(state, data, timeout)
        assert reply.get("state") == state, f"{state} failed: {reply}"
        return reply["data"]

    async def push(
        self, state: str, timeout: float = TIMEOUT, where: Callable[[dict[str, Any]], bool] = lambda d: True
    ) -> dict[str, Any]:
        """The next push of ``state`` whose data satisfies ``where`` (others are kept)."""
        for index, msg in enumerate(self.pushes):
            if msg.get("state") == state and "id" not in msg and where(msg.get("data", {})):
                return self.pushes.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            if msg.get("state") == state and "id" not in msg and where(msg.get("data", {})):
                return msg
            self.pushes.append(msg)

    async def no_push(self, state: str, wait: float, where: Callable[[dict[str, Any]], bool] = lambda d: True) -> None:
        """Assert that no push of ``state`` (matching ``where``) arrives within ``wait`` seconds."""
        try:
            msg = await self.push(state, timeout=wait, where=where)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected push: {msg}")

    async def closed(self, timeout: float = TIMEOUT) -> int | None:
        """Wait for the server's close; return its code (frames on the way are kept)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.pushes.append(await self.recv(max(0.01, deadline - time.monotonic())))
            except Closed as exc:
                return exc.code

    def abort(self) -> None:
        """Vanish: drop the TCP connection at once (RST, no close frame)."""
        sock = self.ws.transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: the kernel sends a reset instead of a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.ws.transport.abort()

    async def close(self) -> None:
        await self.ws.close()


async def open_client(ws_url: str, *, query: str = "", timeout: float = TIMEOUT) -> Client:
    ws = await connect(
        ws_url + SOCKET_PATH + query, compression=None, open_timeout=timeout, ping_interval=None, max_size=2**24
    )
    return Client(ws)


async def login(ws_url: str, token: str, *, query: str = "", timeout: float = TIMEOUT) -> Client:
    """Open a connection and complete the handshake; returns the client with ``user`` set."""
    client = await open_client(ws_url, query=query, timeout=timeout)
    await client.send({"token": token})
    first = await client.recv(timeout)
    assert first.get("state") == "initialised", f"handshake failed: {first}"
    client.user = first["data"]["user"]
    return client


@contextlib.asynccontextmanager
async def clients() -> Any:
    """Collects clients and closes (or aborts) all of them at the end, whatever happened."""
    opened: list[Client] = []
    try:
        yield opened
    finally:
        for client in opened:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.ws.close(), 2)
            with contextlib.suppress(Exception):
                client.ws.transport.abort()


class BlockingClient:
    """``Client`` for synchronous code: Playwright's sync API runs its own event loop in the test's
    thread, so the client runs on an event loop in a thread of its own, and each call waits for it.
    ``timeout`` bounds every wait (the browser tests share the machine with Chromium)."""

    def __init__(self, ws_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="BlockingClient", daemon=True)
        self._thread.start()
        try:
            self.client = self._wait(login(ws_url, token, timeout=timeout))
        except BaseException:
            self._end_loop()
            raise
        self.user = self.client.user
        self.pushes = self.client.pushes

    def _wait(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=self.timeout * 2)

    def request(self, state: str, data: Any = None) -> dict[str, Any]:
        return self._wait(self.client.request(state, data, self.timeout))

    def ok(self, state: str, data: Any = None) -> dict[str, Any]:
        return self._wait(self.client.ok(state, data, self.timeout))

    def push(self, state: str) -> dict[str, Any]:
        return self._wait(self.client.push(state, self.timeout))

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self._wait(asyncio.wait_for(self.client.close(), 2))
        finally:
            self._end_loop()

    def _end_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
