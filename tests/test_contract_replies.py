"""Real frames against the generated AsyncAPI document: every reply, push, error and the handshake's
answer that a session's life produces, through the real ASGI application, validates against the
schema its state declared (sessions_app/replies.py), with undeclared members refused."""

import datetime

import pytest
from asgiref.sync import sync_to_async

from sessions_app import asyncapi
from tests.contract import FrameChecker
from tests.utils import access_for, connected, open_socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def checker():
    return FrameChecker(asyncapi.document())


async def drain(client, checker):
    for frame in client.pushes:
        checker.check(frame)
    client.pushes.clear()


async def test_a_sessions_life_matches_the_declared_replies_and_pushes(alice, bob, checker):
    async def ok(client, state, data=None):
        reply = await client.request(state, data)
        checker.check(reply)
        assert reply["state"] == state, reply
        return reply["data"]

    async with connected(alice) as a, connected(bob) as b:
        await ok(a, "ping")
        await ok(a, "authenticate", {"token": access_for(alice)})
        created = await ok(a, "create", {"title": "Trip", "data": {"items": []}})
        sid = created["id"]
        await ok(a, "list")
        await ok(a, "invite", {"username": "bob", "role": "editor"})
        checker.check(await b.push("session_added"))
        await ok(a, "contacts", {"prefix": ""})
        await ok(a, "rename", {"title": "Trip 2"})
        checker.check(await b.push("session_renamed"))
        await ok(b, "join", {"session": sid})
        checker.check(await a.push("presence"))
        await ok(a, "presence")
        await ok(a, "patch", {"version": 0, "ops": [{"op": "add", "path": "/items/-", "value": "milk"}]})
        checker.check(await b.push("patched"))
        await ok(a, "save", {"message": "first"})
        checker.check(await b.push("saved"))
        assert await a.closed() == 1000

    async with connected(alice) as a, connected(bob) as b:
        catch_up = await ok(a, "join", {"session": sid, "since": 0})
        assert catch_up["changes"]
        await ok(b, "join", {"session": sid})
        await ok(a, "patch", {"version": 1, "ops": [{"op": "replace", "path": "/items/0", "value": "oat milk"}]})
        await ok(a, "revisions")
        await ok(a, "revision", {"number": 1})
        await ok(a, "restore", {"number": 1, "version": 2})
        checker.check(await b.push("patched"))
        await ok(a, "invite", {"username": "bob", "role": "viewer"})
        checker.check(await b.push("role_changed"))
        checker.check(await b.push("members"))
        await ok(a, "remove", {"username": "bob"})
        checker.check(await b.push("session_removed"))
        await ok(a, "delete")
        await ok(a, "leave")
        error = await a.request("no-such-state")
        checker.check(error)
        assert error["code"] == "unknown_state"
        await drain(a, checker)
        await drain(b, checker)
        await ok(a, "save")
        assert await a.closed() == 1000

    replies = {key for key in checker.seen if key.startswith("reply.")}
    assert replies == {
        f"reply.{name}"
        for name in (
            "ping authenticate create list invite contacts rename join presence patch save revisions revision "
            "restore remove delete leave"
        ).split()
    }
    assert {"push.session_added", "push.session_renamed", "push.presence", "push.patched", "push.saved"} <= checker.seen
    assert {"push.role_changed", "push.members", "push.session_removed", "error"} <= checker.seen


async def test_the_handshakes_answer_and_token_expiring_match_the_document(alice, checker):
    client = await open_socket()
    try:
        # Expiring within the server's warning margin (30 s): token_expiring is pushed at once.
        token = await sync_to_async(access_for)(alice, lifetime=datetime.timedelta(seconds=20))
        await client.send({"token": token})
        initialised = await client.recv()
        checker.check(initialised)
        checker.check(await client.push("token_expiring", timeout=5))
    finally:
        await client.ws.disconnect()
    assert checker.seen == {"initialised", "push.token_expiring"}


def test_a_reply_with_a_member_its_schema_does_not_declare_is_refused(checker):
    checker.check({"state": "patch", "id": 1, "data": {"version": 3}})
    with pytest.raises(Exception, match="Additional properties"):
        checker.check({"state": "patch", "id": 1, "data": {"version": 3, "extra": True}})
    with pytest.raises(Exception, match="is not of type 'integer'"):
        checker.check({"state": "patch", "id": 1, "data": {"version": "3"}})
