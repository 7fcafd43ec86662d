"""Issue 5, item 2: a daphne process is killed (SIGKILL) while its clients are in a shared session.

Two daphne processes share a private Redis and one database. Clients on the first one keep patching
when it is killed; they reconnect to the second one and resume with ``since``; no acknowledged
patch is lost; the presence of a client that does not come back disappears within
``SESSIONS_PRESENCE_TTL + SESSIONS_PRESENCE_HEARTBEAT`` (docs/protocol.md, sessions_app/process.py).
"""

import asyncio
import time

import pytest

from tests import live, wsclient

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TTL = 2.0
HEARTBEAT = 0.5
# Scheduling slack on a loaded machine: the bound is measured from the kill to the push's arrival.
MARGIN = 1.5


async def append_until_stopped(client, name, acked, stop):
    """Append ``name-i`` to ``/items`` until ``stop`` is set or the connection drops.

    Records every acknowledged patch as ``acked[version] = value``; a conflict is retried at the
    version the server reports (appending commutes, so that is a complete rebase).
    """
    version, index = 0, 0
    try:
        while not stop.is_set():
            value = f"{name}-{index}"
            reply = await client.request(
                "patch", {"version": version, "ops": [{"op": "add", "path": "/items/-", "value": value}]}
            )
            if reply["state"] == "patch":
                version = reply["data"]["version"]
                acked[version] = value
                index += 1
            else:
                assert reply["code"] == "conflict", reply
                version = reply["data"]["version"]
    except (wsclient.Closed, TimeoutError, ConnectionError):
        return  # the process serving this client died: what was acknowledged is in `acked`


async def test_clients_of_a_killed_process_resume_on_another_and_nothing_acknowledged_is_lost(started):
    redis = started.redis()
    database = started.sqlite()
    # The writers send as fast as replies come back: the rate limit is not what is tested here.
    settings = {
        "SESSIONS_PRESENCE_TTL": TTL,
        "SESSIONS_PRESENCE_HEARTBEAT": HEARTBEAT,
        "SESSIONS_RATE_LIMIT": 10_000,
        "SESSIONS_RATE_BURST": 10_000,
    }
    doomed = started.daphne(database, redis.url, **settings)
    survivor = started.daphne(database, redis.url, **settings)
    tokens = {name: survivor.token(name) for name in ("alice", "bob", "carol", "dave")}

    async with wsclient.clients() as opened:
        alice, bob, dave = [await wsclient.login(doomed.ws, tokens[name]) for name in ("alice", "bob", "dave")]
        carol = await wsclient.login(survivor.ws, tokens["carol"])
        opened += [alice, bob, dave, carol]
        session = (await alice.ok("create", {"title": "shared", "data": {"items": []}}))["id"]
        for name in ("bob", "carol", "dave"):
            await alice.ok("invite", {"username": name, "role": "editor"})
        for client in (bob, carol, dave):
            await client.ok("join", {"session": session})
        present = await carol.ok("presence")
        assert [user["username"] for user in present["present"]] == ["alice", "bob", "carol", "dave"]

        acked: dict[int, str] = {}
        stop = asyncio.Event()
        writers = [
            asyncio.create_task(append_until_stopped(client, name, acked, stop))
            for client, name in ((alice, "alice"), (bob, "bob"), (carol, "carol"))
        ]
        # Let them write for a while, then kill the first process while its clients are mid-stream.
        await asyncio.sleep(1.0)
        killed_at = time.monotonic()
        doomed.kill()
        await asyncio.wait_for(asyncio.gather(writers[0], writers[1]), 10)  # alice and bob see the drop
        stop.set()
        await asyncio.wait_for(writers[2], 10)
        assert any(value.startswith("alice") for value in acked.values())
        assert any(value.startswith("carol") for value in acked.values())

        # Dave does not come back: the others are told he left within TTL + one heartbeat.
        left = await carol.push(
            "presence",
            timeout=TTL + HEARTBEAT + MARGIN + 2,
            where=lambda d: "left" in d and d["left"]["username"] == "dave",
        )
        elapsed = time.monotonic() - killed_at
        assert elapsed <= TTL + HEARTBEAT + MARGIN, f"dave's presence lasted {elapsed:.2f} s after the kill"
        assert "dave" not in [user["username"] for user in left["data"]["present"]]

        # Alice and bob reconnect to the surviving process and resume from their last version.
        for name in ("alice", "bob"):
            mine = [version for version, value in acked.items() if value.startswith(name)]
            since = max(mine)
            client = await wsclient.login(survivor.ws, tokens[name])
            opened.append(client)
            resumed = await client.ok("join", {"session": session, "since": since})
            versions = [change["version"] for change in resumed["changes"]]
            assert versions == list(range(since + 1, resumed["version"] + 1))
            replayed = {change["version"]: change["ops"][0]["value"] for change in resumed["changes"]}
            assert {v: value for v, value in acked.items() if v > since} == {v: replayed[v] for v in acked if v > since}
            if name == "alice":
                alice_again = client

        # Every acknowledged patch is in the document, at the place its version says.
        snapshot = await carol.ok("join", {"session": session, "since": 10**9})
        items = snapshot["data"]["items"]
        assert len(items) == snapshot["version"]
        for version, value in acked.items():
            assert items[version - 1] == value, (version, value)

        # Pushes flow between the reconnected clients and the survivor's own.
        reply = await carol.ok(
            "patch", {"version": snapshot["version"], "ops": [{"op": "add", "path": "/items/-", "value": "after"}]}
        )
        pushed = await alice_again.push("patched", where=lambda d: d["version"] == reply["version"])
        assert pushed["data"]["ops"][0]["value"] == "after"
        present = await carol.ok("presence")
        assert [user["username"] for user in present["present"]] == ["alice", "bob", "carol"]

    # The killed process's rows went with its heartbeat; the survivor removed its own on close.
    count = "SELECT COUNT(*) FROM sessions_app_connection"
    live.wait_until(lambda: live.sqlite_query(database, count) == [(0,)], 5, "connection rows to be removed")
    assert "Exception inside application" not in survivor.log(), survivor.log()[-4000:]
