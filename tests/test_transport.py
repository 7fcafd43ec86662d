"""The consumer's transport (sessions_app.transport): ordered writes behind a send that waits, the
close behind the frames before it, frames to a gone client dropped quietly, and layer messages
handled one at a time with the client's frames."""

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async

from sessions_app import process
from sessions_app.consumers import SessionConsumer
from sessions_app.timers import Timers
from sessions_app.transport import ConnectionState
from tests.utils import connected

ADD = [{"op": "add", "path": "/a", "value": 1}]


def opened(send: Any) -> SessionConsumer:
    """A consumer as its loop leaves it after the handshake, writing through ``send``."""
    consumer = SessionConsumer()
    consumer.base_send, consumer.timers, consumer.state = send, Timers(), ConnectionState.OPEN
    consumer.channel_name = "test.1"
    return consumer


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
        self.sent.append(message.get("text", message["type"]))


async def test_a_send_that_waits_queues_that_connections_frames_in_order_and_blocks_no_one_else() -> None:
    slow_gate, fast_gate = Gate(), Gate()
    fast_gate.calls = 1  # never waits
    slow, fast = opened(slow_gate.send), opened(fast_gate.send)

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
    assert slow._outbox is None and slow.timers._tasks == ()
    slow.write("4")  # back to writing in place
    assert slow_gate.sent[-1] == "4"


class FutureSend:
    """An ASGI ``send`` returning a future, not a coroutine, as granian's does (``PyFutureAwaitable``:
    ``__await__``, no ``send``); each future completes when the test says the frame went out."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.pending: list[asyncio.Future[None]] = []

    def send(self, message: dict[str, Any]) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda _: self.sent.append(message.get("text", message["type"])))
        self.pending.append(future)
        return future

    def complete(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)


async def test_a_send_that_returns_a_future_writes_in_order_and_closes_with_the_code() -> None:
    gate = FutureSend()
    consumer = opened(gate.send)
    consumer.write("1")
    consumer.write("2")
    await consumer.close(4401)
    assert [m.get("text", m["type"]) for m in consumer._outbox] == ["2", "websocket.close"]
    for _ in range(5):
        gate.complete()
        await asyncio.sleep(0)
    assert gate.sent == ["1", "2", "websocket.close"]
    assert consumer._outbox is None and consumer.timers._tasks == ()


async def test_cancelling_a_waiting_send_ends_it_cleanly() -> None:
    gate = Gate()
    consumer = opened(gate.send)
    consumer.write("1")
    consumer.write("2")
    (task,) = consumer.timers._tasks
    await asyncio.sleep(0)  # the task waits on the gate
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert consumer._outbox is None and gate.sent == []


async def test_a_close_queues_behind_the_frames_still_waiting_for_the_transport_and_later_frames_are_dropped() -> None:
    gate = Gate()
    consumer = opened(gate.send)
    consumer.write("1")
    consumer.write("2")
    await consumer.close(4401)
    consumer.write("after the close")
    gate.open.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert gate.sent == ["1", "2", "websocket.close"]


async def test_the_send_buffer_bound_closes_a_connection_whose_frames_wait_with_4008(settings) -> None:
    settings.SESSIONS_MAX_SEND_BUFFER = 1000
    sent: list[dict[str, Any]] = []
    gate = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if not sent:
            await gate.wait()
        sent.append(message)

    consumer = opened(send)
    for _ in range(20):
        consumer.write("x" * 100)  # the first send waits; the rest queue until 1,000 characters
    assert consumer.state is ConnectionState.CLOSING
    gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [m["type"] for m in sent] == ["websocket.send", "websocket.close"]  # queued frames dropped
    assert sent[-1]["code"] == 4008


async def test_the_send_buffer_counts_utf8_bytes_not_characters(settings) -> None:
    settings.SESSIONS_MAX_SEND_BUFFER = 1000
    gate = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        await gate.wait()

    ascii_text, accented = opened(send), opened(send)
    for _ in range(7):  # the first is in the waiting send; six wait behind it
        ascii_text.write("x" * 100)  # 600 bytes waiting
        accented.write("\u00e9" * 100)  # 100 characters of 2 bytes: 1,200 bytes waiting
    assert ascii_text.state is ConnectionState.OPEN
    assert accented.state is ConnectionState.CLOSING
    gate.set()


async def test_a_frame_to_a_client_that_is_gone_is_dropped_quietly() -> None:
    async def gone(message: dict[str, Any]) -> None:
        raise ConnectionResetError("client disconnected")  # uvicorn's ClientDisconnected is an OSError

    consumer = opened(gone)
    consumer.write("lost")  # no exception, no task
    assert consumer._outbox is None and consumer.timers._tasks == ()


async def test_autobahns_disconnected_on_daphne_is_a_client_gone_too(caplog) -> None:
    from autobahn.exception import Disconnected

    async def gone(message: dict[str, Any]) -> None:
        raise Disconnected("Attempt to send on a closed protocol")

    consumer = opened(gone)
    consumer.write("lost")
    assert "ERROR" not in caplog.text and consumer.timers._tasks == ()


@pytest.mark.django_db(transaction=True)
async def test_closing_a_deactivated_users_backed_up_socket_holds_up_no_other_session(alice, bob, carol) -> None:
    async with connected(alice) as a, connected(bob) as b, connected(carol) as c:
        quiet = (await b.ok("create", {"title": "quiet", "data": {}}))["id"]
        await b.ok("invite", {"username": "carol", "role": "editor"})
        await c.ok("join", {"session": quiet})
        await b.push("presence")

        # alice's socket is backed up: every send to it waits (as uvicorn's does for a full buffer).
        gate = Gate()
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
        assert len(gate.sent) == 2 and '"not_authenticated"' in gate.sent[0] and gate.sent[1] == "websocket.close"
        assert stuck.state is not ConnectionState.OPEN
        await a.ws.disconnect()
