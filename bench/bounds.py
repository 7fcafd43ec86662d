"""The bounds of issue 11, measured on live servers of this checkout (tests/live.py launchers).

    .venv/bin/python bench/bounds.py patch   # item 1: one large patch, and another user meanwhile
    .venv/bin/python bench/bounds.py saves   # item 7: 54 saves of a ~960 KB document
    .venv/bin/python bench/bounds.py pool    # item 8: 150 concurrent /healthz on PostgreSQL

``patch``: one daphne on SQLite; alice builds a ~960 KB document (16 lists of 30,000 zeros under
/a, made with copy) and sends one patch of 999 ``move`` of /a onto itself and a failing ``test``;
meanwhile bob asks ``list`` (a database hop) again and again. Prints how long the patch took, and
bob's longest wait. ``saves``: one daphne on SQLite; the same document saved 54 times (each save
closes the socket: reconnect, join, save); prints the revisions kept and the bytes of their JSON.
``pool``: one daphne on a fresh PostgreSQL database (POSTGRES_TEST_URL's server); 150 concurrent
``GET /healthz``, then 8 token requests; prints the peak of the server's backends in
``pg_stat_activity`` and their number a second later.
"""

import asyncio
import json
import sys
import tempfile
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import live

# Compact frames: the frame limit counts bytes, and the document's first list is ~60 KB of zeros.
live.json = types.SimpleNamespace(dumps=lambda o: json.dumps(o, separators=(",", ":")), loads=json.loads)


async def large_session(client: live.Client) -> tuple[str, int]:
    """Create the ~960 KB session; returns its id and version."""
    created = await client.ok("create", {"title": "large", "data": {"a": {"l0": [0] * 30_000}}}, timeout=60)
    version = 0
    for first in range(1, 16, 8):  # 8 copies of 30,001 nodes fit one small patch's work budget
        ops = [{"op": "copy", "from": "/a/l0", "path": f"/a/l{i}"} for i in range(first, min(first + 8, 16))]
        version = (await client.ok("patch", {"version": version, "ops": ops}, timeout=60))["version"]
    return created["id"], version


async def patch(started: live.Processes) -> None:
    server = started.daphne(started.sqlite())
    async with live.clients() as opened:
        alice = await live.login(server.ws, server.token("alice"))
        bob = await live.login(server.ws, server.token("bob"))
        opened += [alice, bob]
        _, version = await large_session(alice)
        ops = [{"op": "move", "from": "/a", "path": "/a"}] * 999 + [{"op": "test", "path": "/a", "value": 1}]
        started_at = time.monotonic()
        sent = asyncio.create_task(alice.request("patch", {"version": version, "ops": ops}, timeout=900))
        waits = []
        while not sent.done() or not waits:
            asked = time.monotonic()
            await bob.ok("list", timeout=900)
            waits.append(time.monotonic() - asked)
            await asyncio.sleep(0.05)
        reply = await sent
        print(f"patch of 1,000 ops: {time.monotonic() - started_at:.2f} s -> {reply.get('code')}: {reply.get('error')}")
        print(f"bob's list meanwhile: {len(waits)} requests, longest wait {max(waits):.3f} s")
        print("healthz after:", server.get("/healthz"))


async def saves(started: live.Processes) -> None:
    database = started.sqlite()
    server = started.daphne(database)
    token = server.token("alice")
    async with live.clients() as opened:
        alice = await live.login(server.ws, token)
        opened.append(alice)
        session, _ = await large_session(alice)
    started_at = time.monotonic()
    for number in range(54):
        client = await live.login(server.ws, token)
        await client.ok("join", {"session": session}, timeout=60)
        reply = await client.request("save", {"message": f"save {number}"}, timeout=60)
        if reply.get("state") != "save":
            print(f"save {number}: {reply.get('code')}: {reply.get('error')}")
            await client.close()
            break
        await client.closed()
    [(count, size)] = live.sqlite_query(database, "SELECT COUNT(*), SUM(LENGTH(data)) FROM sessions_app_revision")
    print(f"54 saves: {time.monotonic() - started_at:.1f} s; revisions kept: {count}, bytes of their JSON: {size}")


def pool(started: live.Processes) -> None:
    name, url = started.postgres()
    server = started.daphne(url)

    def backends() -> int:
        return len(live.pg_query("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)))

    seen, stop = [], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(backends())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(150) as threads:
        health = [status for status, _ in threads.map(lambda _: server.get("/healthz"), range(150))]
        login = server.http + "/api/v1/token/"
        credentials = {"username": "bob", "password": live.PASSWORD}
        tokens = [status for status, _ in threads.map(lambda _: live.http_json(login, credentials, 60), range(8))]
    stop.set()
    watcher.join()
    time.sleep(1)
    print(f"/healthz statuses {sorted(set(health))}, token statuses {sorted(set(tokens))}")
    print(f"backends of the server: peak {max(seen)}, a second later {backends()}")


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "patch"
    with live.processes(Path(tempfile.mkdtemp(prefix=f"bounds-{what}-"))) as started:
        if what == "pool":
            pool(started)
        else:
            asyncio.run({"patch": patch, "saves": saves}[what](started))


if __name__ == "__main__":
    main()
