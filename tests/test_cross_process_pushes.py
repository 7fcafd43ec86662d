"""Pushes across processes through channels_redis and the real Redis at REDIS_TEST_URL.

Two checks: two consumers on two RedisChannelLayer instances in this process (what two processes
would hold), then two real daphne processes sharing Redis and a SQLite file, driven over TCP with
tests/wsclient.py. The test Redis database is flushed before and after each test.
"""

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from channels.layers import channel_layers, get_channel_layer
from django.test import override_settings

from tests import live, wsclient
from tests.utils import connected

pytestmark = pytest.mark.redis

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/14")
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


@pytest.fixture
def two_daphnes(redis_db: redis.Redis, started: live.Processes) -> list[live.Server]:
    """Two daphne processes (tests/live.py) on one SQLite file and the test Redis (flushed once
    they are stopped: ``started`` is set up last, so it is torn down first)."""
    first = started.daphne(started.sqlite(), REDIS_TEST_URL)
    return [first, started.another(first)]


async def test_two_daphne_processes_share_patches_and_presence_through_redis(two_daphnes: list[live.Server]) -> None:
    first, second = two_daphnes
    async with wsclient.clients() as opened:
        alice = await wsclient.login(first.ws, first.token("alice"))
        bob = await wsclient.login(second.ws, first.token("bob"))
        opened += [alice, bob]
        session = await alice.ok("create", {"title": "Two processes", "data": {"items": []}})
        await alice.ok("invite", {"username": "bob", "role": "editor"})
        joined = await bob.ok("join", {"session": session["id"]})
        assert [p["username"] for p in joined["present"]] == ["alice", "bob"]
        assert (await alice.push("presence"))["data"]["joined"] == bob.user

        ops = [{"op": "add", "path": "/items/-", "value": "from process 1"}]
        assert await alice.ok("patch", {"version": 0, "ops": ops}) == {"version": 1}
        patched = await bob.push("patched")
        assert patched["data"] == {"session": session["id"], "version": 1, "ops": ops, "by": alice.user}
        await alice.no_push("patched", 0.3)

        ops = [{"op": "add", "path": "/items/-", "value": "from process 2"}]
        assert await bob.ok("patch", {"version": 1, "ops": ops}) == {"version": 2}
        assert (await alice.push("patched"))["data"]["by"] == bob.user
        await bob.no_push("patched", 0.3)

        assert await bob.ok("save", {"message": "both"}) == {"revision": 1, "version": 2}
        assert (await alice.push("saved"))["data"]["revision"] == 1
        assert await bob.closed() == 1000

        left = await alice.push("presence")
        assert left["data"] == {"session": session["id"], "present": [alice.user], "left": bob.user}
        final = await alice.ok("join", {"session": session["id"]})
        assert final["data"] == {"items": ["from process 1", "from process 2"]}
