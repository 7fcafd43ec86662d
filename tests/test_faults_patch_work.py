"""Issue 11, item 1: one patch cannot freeze the process.

A patch of under 64 KiB used to be able to hold the process's one database thread for minutes (999
moves of a large value, each walking it to check its depth): every other connection's handshake
and request waited, and ``/healthz`` still said ok. These run through ``project.asgi.application``
with communicators; the order in which things happen is what is asserted, never a duration.
"""

import asyncio
import json
import threading

import jsonpatch
import pytest
from channels.db import database_sync_to_async

from sessions_app.models import Session
from tests.utils import connected

pytestmark = pytest.mark.django_db(transaction=True)

LISTS, ZEROS = 16, 30_000
MOVES = [{"op": "move", "from": "/a", "path": "/a"}] * 999 + [{"op": "test", "path": "/a", "value": 1}]


async def send_compact(client, state, data, request_id):
    """Send a request as compact JSON (the frame limit counts bytes: no spaces after commas)."""
    await client.send_text(json.dumps({"state": state, "data": data, "id": request_id}, separators=(",", ":")))


async def reply_to(client, request_id, timeout=30):
    while True:
        frame = await client.recv(timeout)
        if frame.get("id") == request_id:
            return frame
        client.pushes.append(frame)


async def large_session(client):
    """A session holding ~960 KB: 16 lists of 30,000 zeros under /a, made with copy; returns its version."""
    await send_compact(client, "create", {"title": "large", "data": {"a": {"l0": [0] * ZEROS}}}, "create")
    assert (await reply_to(client, "create"))["state"] == "create"
    version = 0
    for first in range(1, LISTS, 8):  # 8 copies of 30,001 nodes fit one small patch's budget
        ops = [{"op": "copy", "from": "/a/l0", "path": f"/a/l{i}"} for i in range(first, min(first + 8, LISTS))]
        version = (await client.ok("patch", {"version": version, "ops": ops}))["version"]
    size = await database_sync_to_async(lambda: len(json.dumps(Session.objects.get().data)))()
    assert size > 950_000
    return version


@pytest.fixture
def held_patch(monkeypatch):
    """Hold the first operation of the MOVES patch where it is applied, whatever thread that is,
    until the test lets it go: ``(started, release, applied)`` (applied counts its operations)."""
    started, release = threading.Event(), threading.Event()
    applied = []
    apply = jsonpatch.JsonPatch.apply

    def held(self, obj, *args, **kwargs):
        if self.patch[0] in MOVES:
            if not applied:
                started.set()
                assert release.wait(20), "the test never released the patch"
            applied.append(self.patch[0]["op"])
        return apply(self, obj, *args, **kwargs)

    monkeypatch.setattr(jsonpatch.JsonPatch, "apply", held)
    try:
        yield started, release, applied
    finally:
        release.set()


async def test_while_a_patch_on_a_large_document_is_applied_other_connections_get_their_database_replies(
    alice, bob, held_patch
):
    started, release, applied = held_patch
    async with connected(alice) as a, connected(bob) as b:
        version = await large_session(a)
        await send_compact(a, "patch", {"version": version, "ops": MOVES}, "moves")
        assert await asyncio.to_thread(started.wait, 20), "the patch was never applied"

        # The patch is being applied, and held there. Another connection's requests that need
        # the database thread are answered meanwhile (before: they waited behind the patch) ...
        assert (await b.ok("list")) == {"sessions": []}
        await b.ok("create", {"title": "meanwhile", "data": {}})
        async with connected(bob) as handshake:  # ... and so is a new handshake
            assert handshake.user["username"] == "bob"

        release.set()
        reply = await reply_to(a, "moves")
        # Refused for its failing test, once every operation was applied once: its work was
        # what its size allows (tests/test_documents.py counts it), never 999 walks of /a.
        assert reply["code"] == "invalid_data", reply
        assert reply["error"].startswith("Operation 999 (test /a)")
        assert applied == ["move"] * 999 + ["test"]
        assert (await a.ok("ping"))["server_time"]
    assert (
        await database_sync_to_async(Session.objects.filter(title="large").values_list("version", flat=True).get)()
        == version
    )


async def test_a_patch_on_a_large_document_is_stored_like_any_other(alice, bob):
    async with connected(alice) as a:
        version = await large_session(a)
        session = (await a.ok("list"))["sessions"][0]["id"]
        await a.ok("invite", {"username": "bob", "role": "editor"})
        async with connected(bob) as b:
            await b.ok("join", {"session": session})
            ops = [{"op": "replace", "path": "/a/l3/7", "value": 7}, {"op": "move", "from": "/a/l4", "path": "/b"}]
            assert await a.ok("patch", {"version": version, "ops": ops}) == {"version": version + 1}
            pushed = await b.push("patched")
            assert pushed["data"]["version"] == version + 1 and pushed["data"]["ops"] == ops
            # A patch on the version it was made on conflicts, as on a small document.
            stale = await a.request("patch", {"version": version, "ops": ops})
            assert stale["code"] == "conflict" and stale["data"] == {"version": version + 1}

    data = await database_sync_to_async(lambda: Session.objects.get(title="large").data)()
    assert data["a"]["l3"][7] == 7 and data["b"] == [0] * ZEROS and "l4" not in data["a"]
