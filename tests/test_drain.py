"""Issue 13, item 2: a process told to stop (SIGTERM) drains (sessions_app/drain.py).

In-process (Channels' communicator): the drain closes an idle socket with 1012, closes a socket
accepted during the drain at once, removes this process's ServerProcess row, and only then calls
the server's own SIGTERM handler.

Real servers on PostgreSQL and a private Redis (tests/live.py): a patch is held in flight by a row
lock the test takes on the session (the patch waits for it in ``UPDATE``); SIGTERM comes while it
waits. The process stops listening, the patch gets its reply when the lock goes, then the socket
closes with 1012; a request sent behind it is not carried out; the process's ServerProcess row is
gone when it has exited. Under daphne and under uvicorn.
"""

import asyncio
import os
import signal
from collections.abc import Iterator

import psycopg
import pytest
from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async

from sessions_app import drain, presence, protocol
from sessions_app.models import ServerProcess
from tests import live, wsclient
from tests.utils import connected, open_socket

SETTINGS = {"SESSIONS_DRAIN_TIMEOUT": 20, "SESSIONS_PRESENCE_HEARTBEAT": 0.5, "SESSIONS_PRESENCE_TTL": 30}


def server_rows(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute("SELECT count(*) FROM sessions_app_serverprocess").fetchone()[0]


@pytest.fixture
def draining() -> Iterator[None]:
    """Whatever the test drains, the next test's connections are accepted again."""
    yield
    drain.reset()


@pytest.mark.django_db(transaction=True)
async def test_the_drain_closes_with_1012_forgets_the_process_then_calls_the_servers_handler(alice, draining) -> None:
    calls: list[int] = []
    row_exists = database_sync_to_async(lambda: ServerProcess.objects.filter(pk=presence.SERVER_ID).exists())

    def server_handler(signum: int, frame: object) -> None:
        calls.append(signum)

    async with connected(alice) as client:
        await database_sync_to_async(presence.server_heartbeat)()
        assert await row_exists()
        task = drain.start(server_handler)
        assert drain.start(server_handler) is None, "a second SIGTERM starts nothing more"
        assert await client.closed() == protocol.CLOSE_SERVICE_RESTART
        late = await open_socket()
        assert await late.closed() == protocol.CLOSE_SERVICE_RESTART, "accepted during the drain: closed at once"
        await late.ws.disconnect()
        assert calls == [], "the server's handler waits for the sockets to end"
    await asyncio.wait_for(task, 10)
    assert calls == [signal.SIGTERM]
    assert not await row_exists()


@pytest.mark.django_db(transaction=True)
async def test_a_drain_started_inside_a_sync_to_async_call_still_forgets_the_process(draining, caplog) -> None:
    """SIGTERM interrupts whatever runs: its handler, and the drain it starts, would inherit the
    context of a task awaiting a thread-sensitive database call (asgiref's deadlock marker set),
    and the drain's own database call then failed ("would deadlock"). The drain runs in a context
    of its own."""
    await database_sync_to_async(presence.server_heartbeat)()
    row_exists = database_sync_to_async(lambda: ServerProcess.objects.filter(pk=presence.SERVER_ID).exists())
    assert await row_exists()
    marker = SyncToAsync.deadlock_context.set(True)  # as inside a pending database_sync_to_async call
    try:
        task = drain.start(lambda signum, frame: None)
    finally:
        SyncToAsync.deadlock_context.reset(marker)
    await asyncio.wait_for(task, 10)
    assert "could not delete this process's row" not in caplog.text
    assert not await row_exists()


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
async def test_a_request_in_flight_at_sigterm_gets_its_reply_then_close_1012(started, server) -> None:
    _name, database_url = started.postgres()
    redis = started.redis()
    process = getattr(started, server)(database_url, redis.url, **SETTINGS)
    token = process.token("alice")
    async with wsclient.clients() as opened:
        client = await wsclient.login(process.ws, token)
        idle = await wsclient.login(process.ws, token)
        opened += [client, idle]
        session = (await client.ok("create", {"title": "drain", "data": {"items": []}}))["id"]
        await live_wait(lambda: server_rows(database_url) == 1, "the heartbeat's row")

        with psycopg.connect(database_url, connect_timeout=5) as lock:
            lock.execute("SELECT id FROM sessions_app_session WHERE id = %s FOR UPDATE", (session,))
            first = {"op": "add", "path": "/items/-", "value": "in flight"}
            await client.send({"state": "patch", "id": "first", "data": {"version": 0, "ops": [first]}})
            await live_wait(lambda: waiting_queries(database_url), "the patch to wait for the lock")
            behind = {"op": "add", "path": "/items/-", "value": "behind"}
            await client.send({"state": "patch", "id": "behind", "data": {"version": 1, "ops": [behind]}})
            os.kill(process.pid, signal.SIGTERM)
            # The idle connection closes at once, and the listening socket is closed, while the
            # patch still waits for the lock.
            assert await idle.closed(timeout=10) == protocol.CLOSE_SERVICE_RESTART
            await live_wait(lambda: not live.listening(process.port), "the process to stop listening")
            lock.rollback()

        reply = await client.recv(timeout=10)
        assert reply == {"state": "patch", "id": "first", "data": {"version": 1}}
        assert await client.closed(timeout=10) == protocol.CLOSE_SERVICE_RESTART
        assert client.pushes == []  # no reply to the patch behind it

    assert process.process is not None
    process.process.wait(timeout=30)
    assert server_rows(database_url) == 0
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT version, data FROM sessions_app_session WHERE id = %s", (session,)).fetchone()
    assert row == (1, {"items": ["in flight"]})
    assert "SIGTERM: draining 2 connection(s)" in process.log()
    assert "drained 2 connection(s)" in process.log()


def waiting_queries(database_url: str) -> str:
    """The text of the queries waiting for a lock in ``database_url``'s database."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchall()
    return "\n".join(row[0] for row in rows)


async def live_wait(predicate, what: str, timeout: float = 15.0) -> None:
    """``live.wait_until`` off the event loop (the predicate blocks on the database or a socket)."""
    await asyncio.to_thread(live.wait_until, predicate, timeout, what, 0.05)
