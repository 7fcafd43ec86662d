"""Process-level fan-out (sessions_app.fanout): one group member per process, pushes handed to the
local members, held while a member handles a request, written in order behind a waiting send."""

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers, get_channel_layer
from django.test import override_settings

from sessions_app import events, fanout, process
from sessions_app.consumers import SessionConsumer
from sessions_app.registry import state
from tests.test_faults_capacity import Replica
from tests.utils import connected

pytestmark = pytest.mark.django_db(transaction=True)

ADD = [{"op": "add", "path": "/a", "value": 1}]


def who(user: Any) -> dict[str, Any]:
    return {"id": user.pk, "username": user.username}


async def shared(owner: Any, *members: Any) -> str:
    session_id = (await owner.ok("create", {"title": "fan-out", "data": {}}))["id"]
    for member in members:
        await owner.ok("invite", {"username": member.user["username"], "role": "editor"})
    return session_id


async def test_a_group_has_one_layer_member_per_process_however_many_connections_joined(alice, bob, carol) -> None:
    layer = get_channel_layer()
    async with connected(alice) as a, connected(bob) as b, connected(carol) as c, connected(bob) as b2:
        session_id = await shared(a, b, c)
        for member in (b, c, b2):
            await member.ok("join", {"session": session_id})
        group = events.session_group(session_id)
        (channel,) = fanout.channels()
        assert set(layer.groups[group]) == {channel.name}
        assert len(channel.members[group]) == 4

        await a.ok("patch", {"version": 0, "ops": ADD})
        for member in (b, c, b2):
            assert (await member.push("patched"))["data"]["version"] == 1
        assert await a.nothing()

        # The channel leaves the group with its last local member, not before.
        for member in (a, b, c):
            await member.ok("leave")
        assert set(layer.groups.get(group, {})) == {channel.name}
        await b2.ok("leave")
        assert group not in layer.groups or not layer.groups[group]
        assert group not in channel.members


async def test_pushes_that_arrive_while_a_request_is_handled_follow_its_reply_in_order(registry, alice, bob) -> None:
    release = asyncio.Event()

    @state("hold_fanout")
    async def hold(conn: Any, data: Any) -> dict[str, Any]:
        await release.wait()
        return {"held": True}

    async with connected(alice) as a, connected(bob) as b:
        session_id = await shared(a, b)
        await b.ok("join", {"session": session_id})
        await a.push("presence")
        await b.send({"state": "hold_fanout", "id": "h"})
        for version in range(3):
            await a.ok("patch", {"version": version, "ops": [{"op": "add", "path": f"/k{version}", "value": version}]})
        assert await b.nothing(0.2)  # nothing overtakes the reply
        release.set()
        assert await b.recv() == {"state": "hold_fanout", "data": {"held": True}, "id": "h"}
        assert [(await b.recv())["data"]["version"] for _ in range(3)] == [1, 2, 3]


async def test_a_process_channel_that_overflowed_while_stalled_leaves_a_gap_the_member_fills(alice, bob) -> None:
    capacity = 3
    small = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": capacity}}}
    with override_settings(CHANNEL_LAYERS=small):
        channel_layers.backends.clear()
        async with connected(alice) as a, connected(bob) as b:
            session_id = await shared(a, b)
            replica = Replica(await b.ok("join", {"session": session_id}))
            await a.push("presence")

            # The process stalls (its reader stopped) while ten changes commit: the layer keeps the
            # first `capacity` pushes on the process channel and drops the rest.
            (channel,) = fanout.channels()
            channel.reader.cancel()
            await asyncio.gather(channel.reader, return_exceptions=True)
            for version in range(10):
                await a.ok(
                    "patch", {"version": version, "ops": [{"op": "add", "path": f"/k{version}", "value": version}]}
                )
            fanout.channel_for(get_channel_layer(), process.close_user)

            pushed = []
            while not await b.nothing(0.3):
                pushed.append(await b.recv())
            assert [p["data"]["version"] for p in pushed] == list(range(1, capacity + 1))
            for push in pushed:
                assert replica.apply(push)

            await a.ok("patch", {"version": 10, "ops": [{"op": "add", "path": "/last", "value": True}]})
            assert replica.apply(await b.push("patched")) is False  # version 11 after 3: a gap
            replica.catch_up(await b.ok("join", {"session": session_id, "since": replica.version}))
            assert replica.version == 11
            assert replica.data == {**{f"k{v}": v for v in range(10)}, "last": True}
    channel_layers.backends.clear()


class Gate:
    """An ASGI ``send`` whose first call waits until opened, as uvicorn's does for a full buffer."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.open = asyncio.Event()
        self.calls = 0

    async def send(self, message: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls == 1:
            await self.open.wait()
        self.sent.append(message["text"])


async def test_a_send_that_waits_queues_that_connections_frames_in_order_and_blocks_no_one_else() -> None:
    slow, fast = SessionConsumer(), SessionConsumer()
    slow_gate, fast_gate = Gate(), Gate()
    fast_gate.calls = 1  # never waits
    slow.base_send, fast.base_send = slow_gate.send, fast_gate.send

    slow.write("1")
    slow.write("2")
    fast.write("x")
    slow.write("3")
    assert fast_gate.sent == ["x"]  # written at once, behind no one
    assert slow_gate.sent == [] and [m["text"] for m in slow._outbox] == ["2", "3"]

    slow_gate.open.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert slow_gate.sent == ["1", "2", "3"]
    assert slow._outbox is None and slow._tasks == ()
    slow.write("4")  # back to writing in place
    assert slow_gate.sent[-1] == "4"


async def test_cancelling_a_waiting_send_ends_it_cleanly() -> None:
    consumer, gate = SessionConsumer(), Gate()
    consumer.base_send = gate.send
    consumer.write("1")
    consumer.write("2")
    (task,) = consumer._tasks
    await asyncio.sleep(0)  # the task waits on the gate
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert consumer._outbox is None and gate.sent == []


async def test_one_member_whose_socket_fails_does_not_cost_the_others_their_push(alice, bob, carol, caplog) -> None:
    async with connected(alice) as a, connected(bob) as b, connected(carol) as c:
        session_id = await shared(a, b, c)
        await b.ok("join", {"session": session_id})
        await c.ok("join", {"session": session_id})
        (channel,) = fanout.channels()
        group = events.session_group(session_id)
        broken = next(m for m in channel.members[group] if m.user["username"] == "bob")

        async def fails(message: dict[str, Any]) -> None:
            raise RuntimeError("socket gone wrong")

        broken.base_send = fails
        await a.ok("patch", {"version": 0, "ops": ADD})
        assert (await c.push("patched"))["data"]["by"] == who(alice)
        assert "push to connection!" in caplog.text and "socket gone wrong" in caplog.text


async def test_a_close_queues_behind_the_frames_still_waiting_for_the_transport() -> None:
    consumer, gate = SessionConsumer(), Gate()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        if not sent and not gate.open.is_set():
            await gate.open.wait()
        sent.append(message)

    consumer.base_send = send
    consumer.write("1")
    consumer.write("2")
    await consumer.shut(4401)
    consumer.write("after the close")  # dropped by send_frame's callers; write itself queues
    gate.open.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [m.get("text", m["type"]) for m in sent][:3] == ["1", "2", "websocket.close"]
    assert sent[2]["code"] == 4401


async def test_closing_a_deactivated_users_backed_up_socket_holds_up_no_other_session(alice, bob, carol) -> None:
    from sessions_app import process

    async with connected(alice) as a, connected(bob) as b, connected(carol) as c:
        quiet = await shared(b, c)
        await c.ok("join", {"session": quiet})
        await b.push("presence")

        # alice's socket is backed up: every send to it waits (as uvicorn's does for a full buffer).
        gate = Gate()
        gate.calls = 0
        (stuck,) = process._connections[alice.pk]
        stuck.base_send = gate.send
        alice.is_active = False
        await database_sync_to_async(alice.save)()  # user.deactivated through the layer

        for version in range(3):
            await b.ok("patch", {"version": version, "ops": [{"op": "add", "path": f"/q{version}", "value": 1}]})
            assert (await c.push("patched"))["data"]["version"] == version + 1
        assert gate.sent == []  # the close is still waiting for alice's transport

        gate.open.set()
        await asyncio.sleep(0.05)
        assert len(gate.sent) == 1 and '"not_authenticated"' in gate.sent[0]
        assert stuck.closing
        await a.ws.disconnect()


async def test_a_frame_to_a_client_that_is_gone_is_dropped_quietly() -> None:
    consumer = SessionConsumer()

    async def gone(message: dict[str, Any]) -> None:
        raise ConnectionResetError("client disconnected")  # uvicorn's ClientDisconnected is an OSError

    consumer.base_send = gone
    consumer.write("lost")  # no exception, no task
    assert consumer._outbox is None and consumer._tasks == ()
