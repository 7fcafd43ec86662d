"""Issue 5, items 4 and 5: a client that vanishes mid-stream, and a slow handler.

Item 4 runs against a live daphne (a real TCP reset needs a real socket); item 5 registers a
temporary state whose database hop is slow and runs through ``project.asgi.application`` with
communicators, so that the test can tell when the hop has started.
"""

import asyncio
import contextlib
import threading
import time

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from sessions_app import events, services
from sessions_app.handlers import call
from sessions_app.models import Connection, Session
from sessions_app.registry import REGISTRY, state
from tests import live, wsclient
from tests.utils import access_for, connected, open_socket

BLOB = "x" * 40_000  # each push carries ~40 KB: the server is still writing when the client vanishes


# --- item 4: the client vanishes (TCP reset, no close frame) ------------------------------------


async def drain(client, quiet=1.0):
    """Every frame the client gets until ``quiet`` seconds pass without one."""
    frames = list(client.pushes)
    client.pushes.clear()
    with contextlib.suppress(TimeoutError):
        while True:
            frames.append(await client.recv(quiet))
    return frames


def left(frames, username):
    return [f for f in frames if f.get("state") == "presence" and f["data"].get("left", {}).get("username") == username]


@pytest.mark.slow
async def test_a_client_that_vanishes_while_pushed_to_is_cleaned_up_once_without_a_traceback(started):
    database = started.sqlite()
    server = started.daphne(database)
    async with wsclient.clients() as opened:
        alice, bob, carol = [await wsclient.login(server.ws, server.token(name)) for name in ("alice", "bob", "carol")]
        opened += [alice, bob, carol]
        session = (await alice.ok("create", {"title": "vanish", "data": {"blob": ""}}))["id"]
        for client in (bob, carol):
            await alice.ok("invite", {"username": client.user["username"], "role": "editor"})
            await client.ok("join", {"session": session})

        # Alice floods big patches; carol reads nothing, so the server has pushes queued for her.
        version = 0
        for _ in range(15):
            ops = [{"op": "replace", "path": "/blob", "value": f"{version}{BLOB}"}]
            version = (await alice.ok("patch", {"version": version, "ops": ops}))["version"]
        # Carol sends a request and vanishes before its reply: the server writes to a dead socket.
        await carol.send({"state": "presence", "id": "gone"})
        carol.abort()
        for _ in range(15):
            ops = [{"op": "replace", "path": "/blob", "value": f"{version}{BLOB}"}]
            version = (await alice.ok("patch", {"version": version, "ops": ops}))["version"]

        # The others are told once that she left; bob got every patch.
        bob_frames = await drain(bob)
        assert len(left(bob_frames, "carol")) == 1, [f for f in bob_frames if f["state"] == "presence"]
        patched = [f["data"]["version"] for f in bob_frames if f["state"] == "patched"]
        assert patched == list(range(1, version + 1))
        alice_frames = await drain(alice)
        assert len(left(alice_frames, "carol")) == 1
        assert [u["username"] for u in (await alice.ok("presence"))["present"]] == ["alice", "bob"]

    # Her connection row is gone; nothing in the server's log is a traceback.
    carol_id = carol.user["id"]
    assert live.sqlite_query(
        database, "SELECT COUNT(*) FROM sessions_app_connection WHERE user_id = ?", (carol_id,)
    ) == [(0,)]
    log = server.log()
    assert "Traceback" not in log, log[-4000:]
    assert "WSDISCONNECT" in log


# --- item 5: a slow handler -------------------------------------------------------------------------


@contextlib.contextmanager
def slow_state(name, seconds):
    """Register state ``name`` whose database hop sleeps ``seconds``; yields a started-event."""
    hop_started = threading.Event()

    def slow_hop() -> int:
        hop_started.set()
        time.sleep(seconds)  # a long write: the database thread is busy
        return Session.objects.count()

    async def handler(conn, data):
        return {"sessions": await call(slow_hop)}

    state(name)(handler)
    try:
        yield hop_started
    finally:
        REGISTRY.pop(name, None)


async def hop_started_within(event, timeout=5):
    assert await asyncio.to_thread(event.wait, timeout), "the slow hop did not start"


async def shared(alice_client, bob_client):
    session = (await alice_client.ok("create", {"title": "slow", "data": {"n": 0}}))["id"]
    await alice_client.ok("invite", {"username": "bob", "role": "editor"})
    await bob_client.ok("join", {"session": session})
    await alice_client.push("presence")
    return session


def patch_from_another_process(session_id, user, version, value):
    """What another server process does: commit a patch (its own database connection)."""
    try:
        return services.session_patch(
            user=user,
            channel_name="specific.other!process",
            session_id=session_id,
            version=version,
            ops=[{"op": "replace", "path": "/n", "value": value}],
        )
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
async def test_pushes_reach_a_connection_whose_handler_is_slow_once_it_returns(alice, bob):
    with slow_state("slow_test", 1.0) as hop_started:
        async with connected(alice) as a, connected(bob) as b:
            session = await shared(a, b)
            await b.send({"state": "slow_test", "id": "slow"})
            await hop_started_within(hop_started)
            # While bob's handler waits on its hop: a patch committed and published elsewhere ...
            user = {"id": alice.pk, "username": "alice"}
            outcome = await asyncio.to_thread(patch_from_another_process, session, user, 0, 1)
            assert await events.apublish(outcome.pushes)
            # ... and one from alice on this process (its hop queues behind bob's).
            await a.send(
                {"state": "patch", "id": "p", "data": {"version": 1, "ops": [{"op": "add", "path": "/n", "value": 2}]}}
            )
            frames = [await b.recv(timeout=5) for _ in range(3)]
            assert frames[0] == {"state": "slow_test", "data": {"sessions": 1}, "id": "slow"}
            assert [(f["state"], f["data"]["version"]) for f in frames[1:]] == [("patched", 1), ("patched", 2)]
            reply = await a.recv(timeout=5)
            while reply.get("id") != "p":  # alice gets the other process's push first
                reply = await a.recv(timeout=5)
            assert reply["data"] == {"version": 2}
            assert "server_time" in await b.ok("ping")


@database_sync_to_async
def connection_rows(user):
    return Connection.objects.filter(user_id=user.pk).count()


async def in_slow_request(owner, user, hop_started):
    """Connect ``user``, join ``owner``'s session with it, and start its ``slow_test`` request."""
    member = await open_socket()
    await member.send({"token": access_for(user)})
    assert (await member.recv())["state"] == "initialised"
    await shared(owner, member)
    await member.send({"state": "slow_test", "id": "slow"})
    await hop_started_within(hop_started)
    return member


@pytest.mark.django_db(transaction=True)
async def test_a_disconnect_during_a_slow_handler_still_cleans_up(alice, bob):
    with slow_state("slow_test", 1.0) as hop_started:
        async with connected(alice) as a:
            b = await in_slow_request(a, bob, hop_started)
            await b.ws.disconnect(code=1001, timeout=5)  # within daphne's application_close_timeout (10 s)
            gone = await a.push("presence", timeout=5)
            assert gone["data"]["left"] == {"id": bob.pk, "username": "bob"}
            assert await connection_rows(bob) == 0
            assert await a.nothing(0.5)


@pytest.mark.django_db(transaction=True)
async def test_a_connection_cancelled_during_a_slow_handler_still_cleans_up(alice, bob):
    """daphne cancels an application that has not finished ``application_close_timeout`` (10 s)
    after its client went away; a handler stuck that long (a lock wait) must not leave the
    connection's row and presence behind for ever (they count against the connection limit).
    The communicator's disconnect timeout cancels the application the same way.
    """
    with slow_state("slow_test", 1.5) as hop_started:
        async with connected(alice) as a:
            b = await in_slow_request(a, bob, hop_started)
            with contextlib.suppress(asyncio.CancelledError):
                await b.ws.disconnect(code=1001, timeout=0.3)
            # The hop ends 1.5 s after it started; give the cleanup 5 s more (bounded poll).
            deadline = time.monotonic() + 6.5
            while await connection_rows(bob) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert await connection_rows(bob) == 0, "bob's Connection row outlived his cancelled consumer"
            gone = await a.push("presence", timeout=1)
            assert gone["data"]["left"] == {"id": bob.pk, "username": "bob"}
