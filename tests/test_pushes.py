"""Pushes through channel-layer groups: who gets them, how often, and what the layer carries."""

import json
import uuid
from typing import Any

import msgpack
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from sessions_app import events
from sessions_app.models import Connection
from tests.utils import connected

pytestmark = pytest.mark.django_db(transaction=True)

ADD = [{"op": "add", "path": "/a", "value": 1}]


def who(user: Any) -> dict[str, Any]:
    return {"id": user.pk, "username": user.username}


async def session_with(owner_client: Any, **roles: str) -> str:
    session = await owner_client.ok("create", {"title": "Shared"})
    for username, role in roles.items():
        await owner_client.ok("invite", {"username": username, "role": role})
    return session["id"]


def assert_primitives(value: Any) -> None:
    """Only what msgpack carries unchanged: str keys, str/int/float/bool/None, lists, dicts."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, key
            assert_primitives(item)
    elif isinstance(value, list):
        for item in value:
            assert_primitives(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), repr(value)
        if type(value) is int:
            assert -(2**63) <= value < 2**64


async def test_patched_reaches_every_other_connection_including_the_same_users_other_tab(alice: Any, bob: Any) -> None:
    async with connected(alice) as tab1, connected(alice) as tab2, connected(bob) as other:
        session_id = await session_with(tab1, bob="viewer")
        await tab2.ok("join", {"session": session_id})
        await other.ok("join", {"session": session_id})
        await tab1.push("presence")  # bob arrived (alice's second tab is no arrival)

        assert await tab1.ok("patch", {"version": 0, "ops": ADD}) == {"version": 1}
        expected = {"session": session_id, "version": 1, "ops": ADD, "by": who(alice)}
        assert (await tab2.push("patched"))["data"] == expected
        assert (await other.push("patched"))["data"] == expected
        assert await tab1.nothing()
        assert tab1.pushes == []


async def test_patched_is_never_sent_back_to_the_sender(alice: Any, bob: Any) -> None:
    async with connected(alice) as owner, connected(bob) as editor:
        session_id = await session_with(owner, bob="editor")
        await editor.push("session_added")  # the invite, for bob's session list
        await editor.ok("join", {"session": session_id})
        await owner.push("presence")
        for version in range(3):
            await editor.ok("patch", {"version": version, "ops": [{"op": "add", "path": f"/k{version}", "value": 0}]})
        assert [(await owner.push("patched"))["data"]["version"] for _ in range(3)] == [1, 2, 3]
        assert await editor.nothing()
        assert editor.pushes == []


async def test_patched_does_not_reach_connections_outside_the_session(alice: Any, bob: Any) -> None:
    async with connected(alice) as owner, connected(bob) as elsewhere, connected(alice) as idle:
        await elsewhere.ok("create", {"title": "Bob's own"})
        await session_with(owner, bob="editor")
        await elsewhere.push("session_added")  # bob's invite, for his session list
        await idle.push("session_added")  # alice's new session, for her other tab's list
        await owner.ok("patch", {"version": 0, "ops": ADD})
        assert await elsewhere.nothing()
        assert await idle.nothing()


async def test_presence_is_pushed_once_per_user_not_per_tab(alice: Any, bob: Any) -> None:
    async with connected(alice) as owner, connected(bob) as tab1:
        session_id = await session_with(owner, bob="editor")
        await tab1.ok("join", {"session": session_id})
        joined = await owner.push("presence")
        assert joined["data"] == {"session": session_id, "present": [who(alice), who(bob)], "joined": who(bob)}
        assert await tab1.nothing()  # no presence push about oneself

        async with connected(bob) as tab2:
            await tab2.ok("join", {"session": session_id})
            assert await owner.nothing()  # bob was already there
            assert await tab1.nothing()
        assert await owner.nothing()  # bob is still there in his first tab

        await tab1.ok("leave")
        left = await owner.push("presence")
        assert left["data"] == {"session": session_id, "present": [who(alice)], "left": who(bob)}
        assert await owner.nothing()


async def test_the_last_tab_closing_pushes_presence_left(alice: Any, bob: Any) -> None:
    async with connected(alice) as owner:
        session_id = await session_with(owner, bob="editor")
        async with connected(bob) as tab1, connected(bob) as tab2:
            await tab1.ok("join", {"session": session_id})
            await tab2.ok("join", {"session": session_id})
            await owner.push("presence")
            await tab1.ws.disconnect()
            assert await owner.nothing()
        left = await owner.push("presence")
        assert left["data"] == {"session": session_id, "present": [who(alice)], "left": who(bob)}


async def test_saved_is_pushed_to_the_others_and_the_savers_other_tab(alice: Any, bob: Any) -> None:
    async with connected(alice) as saver, connected(alice) as tab2, connected(bob) as other:
        session_id = await session_with(saver, bob="viewer")
        await tab2.ok("join", {"session": session_id})
        await other.ok("join", {"session": session_id})
        await saver.push("presence")
        assert await saver.ok("save", {"message": "m"}) == {"revision": 1, "version": 0}
        expected = {"session": session_id, "revision": 1, "version": 0, "by": who(alice)}
        assert (await tab2.push("saved"))["data"] == expected
        assert (await other.push("saved"))["data"] == expected
        assert await saver.closed() == 1000
        assert saver.pushes == []


async def test_a_dropped_connection_removes_presence_and_tells_the_others(alice: Any, bob: Any) -> None:
    async with connected(alice) as owner:
        session_id = await session_with(owner, bob="editor")
        async with connected(bob) as dropped:
            await dropped.ok("join", {"session": session_id})
            await owner.push("presence")
            await dropped.ws.disconnect(code=1006)  # no leave: the TCP connection is gone

            left = await owner.push("presence")
            assert left["data"] == {"session": session_id, "present": [who(alice)], "left": who(bob)}
            assert await owner.ok("presence") == {"present": [who(alice)]}
            users = await database_sync_to_async(lambda: list(Connection.objects.values_list("user_id", flat=True)))()
            assert users == [alice.pk]


async def test_the_layer_message_carries_the_push_encoded_once_as_primitives(alice: Any, bob: Any) -> None:
    layer = get_channel_layer()
    spy = await layer.new_channel()
    async with connected(alice) as owner, connected(bob) as other:
        session_id = await session_with(owner, bob="viewer")
        await other.ok("join", {"session": session_id})
        await owner.push("presence")
        await layer.group_add(events.session_group(session_id), spy)

        await owner.ok("patch", {"version": 0, "ops": ADD})
        await other.push("patched")
        message = await layer.receive(spy)

    assert message["type"] == "session.push"
    assert json.loads(message["text"]) == {
        "state": "patched",
        "data": {"session": session_id, "version": 1, "ops": ADD, "by": who(alice)},
    }
    assert_primitives(message)
    assert msgpack.unpackb(msgpack.packb(message)) == message


def test_events_push_holds_primitives_only_and_encodes_uuids_and_datetimes_once() -> None:
    import datetime

    session_id = uuid.uuid4()
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    event = events.push(session_id, "presence", {"session": session_id, "at": moment}, exclude="chan!x", version=3)

    assert event.group == events.session_group(session_id)
    assert set(event.message) == {"type", "group", "text", "exclude", "version"}
    assert_primitives(event.message)
    assert msgpack.unpackb(msgpack.packb(event.message)) == event.message
    assert json.loads(event.message["text"]) == {
        "state": "presence",
        "data": {"session": str(session_id), "at": "2026-01-02T03:04:05+00:00"},
    }


def test_session_group_names_follow_channels_rules() -> None:
    session_id = uuid.uuid4()
    group = events.session_group(session_id)
    assert group == events.session_group(str(session_id)) == f"session.{session_id.hex}"
    assert len(group) < 100
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in group)
