"""sessions_app.layers.FanoutChannelLayer: Channels' layer API with one group member per process.

In process, on the in-memory inner layer: the API a Channels consumer uses (new_channel, send,
receive, group_add, group_discard, group_send), local delivery, idle channels forgotten; and
through the real consumer: one layer member per process however many connections joined, pushes
held while a request is handled, states written the Channels way.
"""

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer

from sessions_app import events
from sessions_app.layers import FanoutChannelLayer
from sessions_app.registry import MESSAGE_HANDLERS, message, state
from tests.utils import connected

ADD = [{"op": "add", "path": "/a", "value": 1}]
INNER = {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {}}


@pytest.fixture
async def layer() -> Any:
    made = FanoutChannelLayer(inner=INNER, capacity=3)
    yield made
    reader = made.stop()
    if reader is not None:
        await asyncio.gather(reader, return_exceptions=True)


async def test_group_send_reaches_every_member_and_the_inner_group_holds_only_the_process_channel(layer) -> None:
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("lobby", a)
    await layer.group_add("lobby", b)
    assert set(layer.inner.groups["lobby"]) == {layer.process_channel}

    await layer.group_send("lobby", {"type": "lobby.message", "text": "hi"})
    assert await asyncio.wait_for(layer.receive(a), 1) == {"type": "lobby.message", "text": "hi"}
    assert await asyncio.wait_for(layer.receive(b), 1) == {"type": "lobby.message", "text": "hi"}

    await layer.group_discard("lobby", a)
    assert set(layer.inner.groups["lobby"]) == {layer.process_channel}  # b is still in it
    await layer.group_discard("lobby", b)
    assert not layer.inner.groups.get("lobby")
    await layer.group_send("lobby", {"type": "lobby.message", "text": "nobody"})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(a), 0.1)


async def test_send_to_a_local_channel_is_delivered_without_the_inner_layer_and_raises_channel_full(layer) -> None:
    from channels.exceptions import ChannelFull

    channel = await layer.new_channel()
    for n in range(3):
        await layer.send(channel, {"type": "n", "n": n})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "n", "n": 3})
    assert [(await layer.receive(channel))["n"] for _ in range(3)] == [0, 1, 2]
    assert not layer.inner.channels.get(channel)


async def test_a_group_message_for_a_member_that_does_not_read_drops_its_oldest_beyond_capacity(layer) -> None:
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    for n in range(5):
        await layer.group_send("g", {"type": "n", "n": n})
    await asyncio.sleep(0.05)
    assert [(await layer.receive(channel))["n"] for _ in range(3)] == [2, 3, 4]


async def test_an_attached_channel_gets_its_messages_through_its_sink_in_order(layer) -> None:
    channel = await layer.new_channel()
    got: list[Any] = []
    await layer.send(channel, {"type": "n", "n": 0})  # queued before the sink: handed over on attach
    layer.attach(channel, got.append)
    await layer.group_add("g", channel)
    await layer.send(channel, {"type": "n", "n": 1})
    await layer.group_send("g", {"type": "n", "n": 2})
    await asyncio.sleep(0.05)
    assert [m["n"] for m in got] == [0, 1, 2]
    layer.detach(channel)
    await asyncio.sleep(0.05)  # the process channel leaves the group in a task
    assert "g" not in layer.groups and not layer.inner.groups.get("g")


async def test_each_member_of_a_group_gets_its_own_message_as_with_channels_layers(layer) -> None:
    channels = [await layer.new_channel() for _ in range(3)]
    got: list[dict[str, Any]] = []

    def take(message: dict[str, Any]) -> None:
        got.append(message)
        message.pop("text")  # a handler that changes its event changes no one else's

    for channel in channels:
        layer.attach(channel, take)
        await layer.group_add("lobby", channel)
    await layer.group_send("lobby", {"type": "lobby.message", "text": "hi"})
    await asyncio.sleep(0.05)
    assert len(got) == 3 and len({id(m) for m in got}) == 3


async def test_an_idle_channel_is_forgotten_with_its_groups_after_expiry(layer) -> None:
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    layer._forget_idle(layer.locals[channel].idle_since + layer.expiry + 1)
    assert channel not in layer.locals and "g" not in layer.groups


async def test_names_of_other_channels_go_to_the_inner_layer_unchanged(layer) -> None:
    await layer.send("worker", {"type": "job", "n": 1})
    assert await asyncio.wait_for(layer.receive("worker"), 1) == {"type": "job", "n": 1}


# --- through the consumer ------------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


async def shared(owner: Any, *members: Any) -> str:
    session_id = (await owner.ok("create", {"title": "fan-out", "data": {}}))["id"]
    for member in members:
        await owner.ok("invite", {"username": member.user["username"], "role": "editor"})
    return session_id


@pytestmark_db
async def test_a_session_group_has_one_layer_member_per_process_however_many_connections_joined(
    alice, bob, carol
) -> None:
    layer = get_channel_layer()
    async with connected(alice) as a, connected(bob) as b, connected(carol) as c, connected(bob) as b2:
        session_id = await shared(a, b, c)
        for member in (b, c, b2):
            await member.ok("join", {"session": session_id})
        group = events.session_group(session_id)
        assert set(layer.inner.groups[group]) == {layer.process_channel}
        assert len(layer.groups[group]) == 4

        await a.ok("patch", {"version": 0, "ops": ADD})
        for member in (b, c, b2):
            assert (await member.push("patched"))["data"]["version"] == 1
        assert await a.nothing()

        for member in (a, b, c, b2):
            await member.ok("leave")
        assert group not in layer.groups and not layer.inner.groups.get(group)


@pytestmark_db
async def test_pushes_that_arrive_while_a_request_is_handled_follow_its_reply_in_order(registry, alice, bob) -> None:
    release = asyncio.Event()

    @state("hold_layers")
    async def hold(conn: Any, data: Any) -> dict[str, Any]:
        await release.wait()
        return {"held": True}

    async with connected(alice) as a, connected(bob) as b:
        session_id = await shared(a, b)
        await b.ok("join", {"session": session_id})
        await a.push("presence")
        await b.send({"state": "hold_layers", "id": "h"})
        for version in range(3):
            await a.ok("patch", {"version": version, "ops": [{"op": "add", "path": f"/k{version}", "value": version}]})
        assert await b.nothing(0.2)  # nothing overtakes the reply
        release.set()
        assert await b.recv() == {"state": "hold_layers", "data": {"held": True}, "id": "h"}
        assert [(await b.recv())["data"]["version"] for _ in range(3)] == [1, 2, 3]


@pytest.fixture
def message_handlers() -> Any:
    before = dict(MESSAGE_HANDLERS)
    yield MESSAGE_HANDLERS
    MESSAGE_HANDLERS.clear()
    MESSAGE_HANDLERS.update(before)


@pytestmark_db
async def test_states_written_the_channels_way_group_add_group_send_and_send_to_a_channel_name(
    registry, message_handlers, alice, bob, caplog
) -> None:
    @state("room_join")
    async def room_join(conn: Any, data: Any) -> dict[str, Any]:
        await conn.channel_layer.group_add("room", conn.channel_name)
        return {"channel": conn.channel_name}

    @state("room_say")
    async def room_say(conn: Any, data: Any) -> dict[str, Any]:
        await conn.channel_layer.group_send("room", {"type": "room.message", "text": data["text"]})
        return {}

    @state("poke")
    async def poke(conn: Any, data: Any) -> dict[str, Any]:
        await conn.channel_layer.send(data["to"], {"type": "room.message", "text": "poked"})
        return {}

    @message("room.message")
    async def room_message(conn: Any, event: Any) -> None:
        await asyncio.sleep(0)  # a handler that suspends is finished in order, too
        conn.send_frame({"state": "room", "data": {"text": event["text"]}})

    @message("room.broken")
    async def broken(conn: Any, event: Any) -> None:
        raise RuntimeError("handler bug")

    async with connected(alice) as a, connected(bob) as b:
        await a.ok("room_join")
        bob_channel = (await b.ok("room_join"))["channel"]
        await a.ok("room_say", {"text": "hello"})
        assert (await a.push("room"))["data"] == {"text": "hello"}
        assert (await b.push("room"))["data"] == {"text": "hello"}

        await a.ok("poke", {"to": bob_channel})
        assert (await b.push("room"))["data"] == {"text": "poked"}
        assert await a.nothing()

        # A handler that raises is logged with its traceback; the connection goes on.
        await get_channel_layer().send(bob_channel, {"type": "room.broken"})
        assert "handler bug" in (await b.request("ping"))["state"] or "handler bug" in caplog.text
        assert "handler bug" in caplog.text
        # A type nobody handles is logged and ignored.
        await get_channel_layer().send(bob_channel, {"type": "nobody.handles"})
        assert (await b.request("ping"))["state"] == "ping"
        assert "no handler for a message of type 'nobody.handles'" in caplog.text
