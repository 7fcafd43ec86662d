"""Issue 5, item 3: the database connection drops between messages, on the real PostgreSQL;
issue 11, item 8: a process holds at most DATABASE_POOL_MAX_SIZE connections.

These tests run a live daphne on a fresh PostgreSQL database of their own (created and dropped
here; the server's other databases are never touched), rather than communicators in the pytest
process: what is under test is the server's own handling of its connections (Channels' database
thread, ``CONN_MAX_AGE``, health checks), and every backend of that database in
``pg_stat_activity`` is then the server's, so terminating them or counting them involves no
connection of the test's.
"""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import live, wsclient

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CYCLES = 500
PARALLEL = 10


def backends(database):
    """The pids of the server's connections to ``database`` (queried from the maintenance database)."""
    rows = live.pg_query("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))
    return [pid for (pid,) in rows]


def terminate(database):
    """``pg_terminate_backend`` every connection to ``database``; returns how many there were."""
    pids = backends(database)
    for pid in pids:
        live.pg_query("SELECT pg_terminate_backend(%s)", (pid,))
    live.wait_until(lambda: not set(pids) & set(backends(database)), 5, "terminated backends to go")
    return len(pids)


async def test_the_next_request_on_a_long_lived_socket_succeeds_after_its_backend_is_terminated(started):
    name, url = started.postgres()
    server = started.daphne(url)
    async with wsclient.clients() as opened:
        alice = await wsclient.login(server.ws, server.token("alice"))
        opened.append(alice)
        session = (await alice.ok("create", {"title": "pg", "data": {"n": 0}}))["id"]
        assert await alice.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/n", "value": 1}]}) == {
            "version": 1
        }

        assert terminate(name) >= 1
        # The very next request needs the database: it gets a new connection instead of failing.
        assert await alice.ok("patch", {"version": 1, "ops": [{"op": "replace", "path": "/n", "value": 2}]}) == {
            "version": 2
        }

        # Again, with a read, a join and a patch after each termination.
        for version in (2, 3):
            assert terminate(name) >= 1
            listed = await alice.ok("list")
            assert [item["version"] for item in listed["sessions"]] == [version]
            assert terminate(name) >= 1
            assert (await alice.ok("join", {"session": session}))["data"] == {"n": version}
            assert terminate(name) >= 1
            ops = [{"op": "replace", "path": "/n", "value": version + 1}]
            assert await alice.ok("patch", {"version": version, "ops": ops}) == {"version": version + 1}

        # A new connection's handshake (a database hop) works too, and the socket is still usable.
        assert terminate(name) >= 1
        bob = await wsclient.login(server.ws, server.token("bob"))
        opened.append(bob)
        assert "server_time" in await alice.ok("ping")
    assert "Exception inside application" not in server.log()


async def cycle(server, token):
    """Connect, authenticate, disconnect."""
    client = await wsclient.login(server.ws, token)
    await client.close()


async def test_connect_authenticate_disconnect_cycles_leak_no_database_connections(started):
    name, url = started.postgres()
    server = started.daphne(url, SESSIONS_MAX_CONNECTIONS_PER_USER=PARALLEL * 2)
    token = server.token("alice")
    await cycle(server, token)  # warm up: the server's database thread has its connection
    live.wait_until(lambda: backends(name), 5, "the server's connection")
    before = len(backends(name))

    for _ in range(CYCLES // PARALLEL):
        await asyncio.gather(*(cycle(server, token) for _ in range(PARALLEL)))

    # Every connection's cleanup ran (its row is gone) ...
    def connection_rows():
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM sessions_app_connection").fetchone()[0]

    live.wait_until(lambda: connection_rows() == 0, 10, "every Connection row to be removed")
    # ... and the server holds no more database connections than before (the check's own
    # connection above is gone once PostgreSQL notices it closed).
    live.wait_until(lambda: len(backends(name)) <= before, 5, f"at most {before} backend(s) for {name}")
    async with wsclient.clients() as opened:
        opened.append(await wsclient.login(server.ws, token))
        assert "server_time" in await opened[0].ok("ping")
    assert len(backends(name)) <= before


def peak_backends(database, stop, seen):
    """Until ``stop`` is set, note how many connections the server holds to ``database``."""
    while not stop.is_set():
        seen.append(len(backends(database)))
        time.sleep(0.01)  # a sampling interval, not a wait for something to happen


async def test_concurrent_http_requests_hold_at_most_the_pool_size_of_database_connections(started):
    # Issue 11, item 8: with persistent connections (CONN_MAX_AGE=60), 150 concurrent GET
    # /healthz left 91 idle backends held by one daphne (each request's thread kept its own).
    name, url = started.postgres()
    server = started.daphne(url, DATABASE_POOL_MAX_SIZE=POOL, DATABASE_POOL_TIMEOUT=60)
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=peak_backends, args=(name, stop, seen))
    watcher.start()
    try:
        with ThreadPoolExecutor(150) as pool:
            health = list(pool.map(lambda _: server.get("/healthz"), range(150)))
            # Requests whose views use the database in the request's own thread (SimpleJWT's
            # token view: a user lookup and a password check), more at once than the pool holds.
            # Each takes a hash of ~0.3 s of CPU, so 8 of them (the pool holds 5) are a few seconds.
            login = server.http + "/api/v1/token/"
            tokens = list(pool.map(lambda _: live.http_json(login, CREDENTIALS, timeout=60), range(8)))
    finally:
        stop.set()
        watcher.join()
    assert [status for status, _ in health] == [200] * 150, [body for status, body in health if status != 200][:3]
    assert [status for status, _ in tokens] == [200] * 8, [body for status, body in tokens if status != 200][:3]
    after = len(backends(name))
    assert 1 <= max(seen) <= POOL, seen
    assert after <= POOL
    # The sockets' database work goes on with the pool: a handshake, a create and a patch.
    async with wsclient.clients() as opened:
        alice = await wsclient.login(server.ws, server.token("alice"))
        opened.append(alice)
        await alice.ok("create", {"title": "pooled", "data": {"n": 0}})
        assert await alice.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/n", "value": 1}]}) == {
            "version": 1
        }
    assert len(backends(name)) <= POOL
    assert "Exception inside application" not in server.log()


POOL = 5
CREDENTIALS = {"username": "bob", "password": live.PASSWORD}
