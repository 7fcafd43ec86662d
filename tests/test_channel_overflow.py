"""Issue 5, item 6: a member's channel over capacity.

Pushes wait in two bounded places: the process channel on the layer (``CHANNEL_LAYER_CAPACITY``;
``group_send`` skips a full channel, in channels' in-memory layer and channels_redis alike) and, for
a connection busy with a request, its held pushes (``SESSIONS_PUSH_BUFFER``). Pushes may be lost
either way, but every ``patched`` push carries the session version, so a member that misses some
sees a gap at the next push and ``join`` with ``since`` brings it to exactly the current document
(docs/protocol.md, section 7, "Gaps").
"""

import asyncio
import contextlib

import jsonpatch
import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.test import override_settings
from prometheus_client import REGISTRY as REGISTRY_METRICS

from sessions_app import metrics
from sessions_app.models import Session
from sessions_app.registry import REGISTRY, state
from tests.utils import connected

pytestmark = pytest.mark.django_db(transaction=True)

CAPACITY = 5
FLOOD = 30
SMALL_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": CAPACITY}}}


@contextlib.contextmanager
def holding_state(name):
    """Register state ``name`` whose handler waits for the yielded event: a member busy elsewhere."""
    release = asyncio.Event()

    async def handler(conn, data):
        await release.wait()
        return {}

    state(name)(handler)
    try:
        yield release
    finally:
        REGISTRY.pop(name, None)


@pytest.fixture
def small_layer():
    with override_settings(CHANNEL_LAYERS=SMALL_LAYER, SESSIONS_PUSH_BUFFER=CAPACITY):
        channel_layers.backends.clear()
        yield
    channel_layers.backends.clear()


def busy_drops() -> float:
    """``sessions_pushes_dropped_total{reason="busy"}`` of this process (sessions_app.metrics)."""
    metrics.flush()
    return REGISTRY_METRICS.get_sample_value("sessions_pushes_dropped_total", {"reason": metrics.BUSY}) or 0.0


@database_sync_to_async
def stored(session_id):
    session = Session.objects.get(pk=session_id)
    return session.version, session.data


class Replica:
    """A member's copy of the document, kept up to date from pushes as the JS client does."""

    def __init__(self, snapshot):
        self.version = snapshot["version"]
        self.data = snapshot["data"]
        self.gaps = 0

    def apply(self, push):
        """Apply a ``patched`` push; returns False when its version shows a gap (nothing applied)."""
        version = push["data"]["version"]
        assert isinstance(version, int), push
        if version <= self.version:
            return True  # already have it
        if version != self.version + 1:
            self.gaps += 1
            return False
        self.data = jsonpatch.apply_patch(self.data, push["data"]["ops"])
        self.version = version
        return True

    def catch_up(self, resumed):
        """Apply ``join``'s ``{"changes"}`` after ``since``."""
        for change in resumed["changes"]:
            assert change["version"] == self.version + 1, change
            self.data = jsonpatch.apply_patch(self.data, change["ops"])
            self.version = change["version"]


async def test_a_member_whose_channel_overflowed_detects_the_gap_and_catches_up_exactly(small_layer, alice, bob):
    with holding_state("hold_test") as release:
        async with connected(alice) as a, connected(bob) as b:
            session = (await a.ok("create", {"title": "flood", "data": {"items": [], "count": 0}}))["id"]
            await a.ok("invite", {"username": "bob", "role": "editor"})
            replica = Replica(await b.ok("join", {"session": session}))

            # Bob's connection is busy (its handler waits) while alice floods the session.
            busy = busy_drops()
            await b.send({"state": "hold_test", "id": "hold"})
            assert await b.nothing(0.2)
            version = 0
            for index in range(FLOOD):
                ops = [
                    {"op": "add", "path": "/items/-", "value": {"i": index}},
                    {"op": "replace", "path": "/count", "value": index + 1},
                ]
                version = (await a.ok("patch", {"version": version, "ops": ops}))["version"]
            assert version == FLOOD
            release.set()

            # Bob gets his reply, then only the pushes held for him while he was busy, until silence.
            assert await b.recv(timeout=2) == {"state": "hold_test", "data": {}, "id": "hold"}
            frames = []
            while not await b.nothing(0.5):
                frames.append(await b.recv())
            pushed = [f for f in frames if f["state"] == "patched"]
            assert 0 < len(pushed) < FLOOD, f"{len(pushed)} pushes: the channel did not overflow"
            for push in pushed:
                assert replica.apply(push), [p["data"]["version"] for p in pushed]
            assert replica.version == len(pushed) < FLOOD
            assert 0 < busy_drops() - busy <= FLOOD - len(pushed)  # GET /metrics counts them

            # The next push shows the gap; `join` with `since` fills it exactly.
            ops = [{"op": "replace", "path": "/count", "value": -1}]
            assert (await a.ok("patch", {"version": version, "ops": ops}))["version"] == FLOOD + 1
            after = await b.push("patched")
            assert after["data"]["version"] == FLOOD + 1
            assert replica.apply(after) is False
            assert replica.gaps == 1
            replica.catch_up(await b.ok("join", {"session": session, "since": replica.version}))

            current_version, current_data = await stored(session)
            assert replica.version == current_version == FLOOD + 1
            assert replica.data == current_data
            assert current_data["items"] == [{"i": i} for i in range(FLOOD)]
            assert current_data["count"] == -1
            snapshot = await b.ok("join", {"session": session, "since": current_version + 1})
            assert snapshot["data"] == replica.data
