"""Pushes across processes through channels_redis and the real Redis at REDIS_TEST_URL.

Two checks: two consumers on two RedisChannelLayer instances in this process (what two processes
would hold), then two real daphne processes sharing Redis and a SQLite file, driven over TCP with
the ``websockets`` client. The test Redis database is flushed before and after each test.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from channels.layers import channel_layers, get_channel_layer
from django.test import override_settings
from websockets.asyncio.client import ClientConnection, connect

from tests.utils import connected

pytestmark = pytest.mark.redis

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/14")
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "redis-Test-Pw-2718"
ADD = [{"op": "add", "path": "/a", "value": 1}]


def who(user: Any) -> dict[str, Any]:
    return {"id": user.pk, "username": user.username}


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """The test Redis database, empty before and after the test."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


# --- two layer instances in one process ----------------------------------------------------------


@pytest.fixture
async def new_layer(redis_db: redis.Redis) -> AsyncIterator[Any]:
    """Returns a function that makes the next consumer get a RedisChannelLayer of its own."""
    made: list[Any] = []
    config = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_TEST_URL]}}}

    def fresh() -> Any:
        channel_layers.backends.clear()
        layer = get_channel_layer()
        made.append(layer)
        return layer

    with override_settings(CHANNEL_LAYERS=config):
        yield fresh
        for layer in made:
            await layer.close_pools()
    channel_layers.backends.clear()


@pytest.mark.django_db(transaction=True)
async def test_patched_and_presence_cross_two_redis_layer_instances(new_layer: Any, alice: Any, bob: Any) -> None:
    first = new_layer()
    async with connected(alice) as owner:
        second = new_layer()
        assert second is not first and type(second).__name__ == "RedisChannelLayer"
        async with connected(bob) as other:
            new_layer()  # pushes are published through a third instance
            session = await owner.ok("create", {"title": "Across"})
            await owner.ok("invite", {"username": "bob", "role": "editor"})
            await other.ok("join", {"session": session["id"]})
            joined = await owner.push("presence", timeout=5)
            assert joined["data"]["joined"] == who(bob)

            await owner.ok("patch", {"version": 0, "ops": ADD})
            patched = await other.push("patched", timeout=5)
            assert patched["data"] == {"session": session["id"], "version": 1, "ops": ADD, "by": who(alice)}
            assert await owner.nothing(0.3)

            await other.ok("patch", {"version": 1, "ops": [{"op": "remove", "path": "/a"}]})
            assert (await owner.push("patched", timeout=5))["data"]["by"] == who(bob)
            assert await other.nothing(0.3)

        left = await owner.push("presence", timeout=5)
        assert left["data"] == {"session": session["id"], "present": [who(alice)], "left": who(bob)}


# --- two daphne processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(  # noqa: S603 - our interpreter, our manage.py
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}"


def wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"daphne exited with {process.returncode}:\n{log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)  # polling a child process's port, not a test waiting for silence
    raise AssertionError(f"daphne did not listen on {port} within 30 s:\n{log.read_text()}")


def obtain_token(port: int, username: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/token/",
        data=json.dumps({"username": username, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())["access"]


@pytest.fixture
def two_daphnes(tmp_path: Path, redis_db: redis.Redis) -> Iterator[dict[str, Any]]:
    """Two daphne processes on one SQLite file and the test Redis; always killed afterwards."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "REDIS_URL": REDIS_TEST_URL,
            "DJANGO_SECRET_KEY": "cross-process-test-secret-key-0123456789abcdef",
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("CHANNEL_LAYER_BACKEND", None)
    manage(env, "migrate", "--noinput")
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model\n"
        "for name in ('alice', 'bob'):\n"
        f"    get_user_model().objects.create_user(name, password={PASSWORD!r})\n",
    )
    processes: list[subprocess.Popen[bytes]] = []
    ports = []
    try:
        for index in range(2):
            port = free_port()
            log = tmp_path / f"daphne-{index}.log"
            with open(log, "wb") as output:
                process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed argv
                    [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
                    cwd=ROOT,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            processes.append(process)
            wait_listening(process, port, log)
            ports.append(port)
        yield {
            "urls": [f"ws://127.0.0.1:{port}/api/v1/socket" for port in ports],
            "tokens": {name: obtain_token(ports[0], name) for name in ("alice", "bob")},
            "pids": [process.pid for process in processes],
        }
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait(timeout=10)


class Peer:
    """A ``websockets`` client speaking the protocol: requests with ids, pushes kept aside."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pushes: list[dict[str, Any]] = []
        self.count = 0
        self.user: dict[str, Any] = {}

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def ok(self, state: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        self.count += 1
        rid = f"r{self.count}"
        await self.ws.send(json.dumps({"state": state, "data": data or {}, "id": rid}))
        while True:
            message = await self.recv()
            if message.get("id") == rid:
                assert message["state"] == state, message
                return message["data"]
            self.pushes.append(message)

    async def push(self, state: str, timeout: float = 5) -> dict[str, Any]:
        for index, message in enumerate(self.pushes):
            if message["state"] == state:
                return self.pushes.pop(index)
        while True:
            message = await self.recv(timeout)
            if message["state"] == state:
                return message
            self.pushes.append(message)

    async def nothing(self, timeout: float = 0.3) -> bool:
        try:
            message = await self.recv(timeout)
        except TimeoutError:
            return True
        self.pushes.append(message)
        return False


async def open_peer(url: str, token: str) -> Peer:
    peer = Peer(await connect(url))
    await peer.ws.send(json.dumps({"token": token}))
    first = await peer.recv()
    assert first["state"] == "initialised", first
    peer.user = first["data"]["user"]
    return peer


async def test_two_daphne_processes_share_patches_and_presence_through_redis(two_daphnes: dict[str, Any]) -> None:
    url_1, url_2 = two_daphnes["urls"]
    tokens = two_daphnes["tokens"]
    alice = await open_peer(url_1, tokens["alice"])
    bob = await open_peer(url_2, tokens["bob"])
    try:
        session = await alice.ok("create", {"title": "Two processes", "data": {"items": []}})
        await alice.ok("invite", {"username": "bob", "role": "editor"})
        joined = await bob.ok("join", {"session": session["id"]})
        assert [p["username"] for p in joined["present"]] == ["alice", "bob"]
        assert (await alice.push("presence"))["data"]["joined"] == bob.user

        ops = [{"op": "add", "path": "/items/-", "value": "from process 1"}]
        assert await alice.ok("patch", {"version": 0, "ops": ops}) == {"version": 1}
        patched = await bob.push("patched")
        assert patched["data"] == {"session": session["id"], "version": 1, "ops": ops, "by": alice.user}
        assert await alice.nothing()

        ops = [{"op": "add", "path": "/items/-", "value": "from process 2"}]
        assert await bob.ok("patch", {"version": 1, "ops": ops}) == {"version": 2}
        assert (await alice.push("patched"))["data"]["by"] == bob.user
        assert await bob.nothing()

        assert await bob.ok("save", {"message": "both"}) == {"revision": 1, "version": 2}
        assert (await alice.push("saved"))["data"]["revision"] == 1
        await bob.ws.wait_closed()
        assert bob.ws.close_code == 1000

        left = await alice.push("presence")
        assert left["data"] == {"session": session["id"], "present": [alice.user], "left": bob.user}
        final = await alice.ok("join", {"session": session["id"]})
        assert final["data"] == {"items": ["from process 1", "from process 2"]}
    finally:
        await alice.ws.close()
        await bob.ws.close()
