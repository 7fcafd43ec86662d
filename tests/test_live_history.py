"""The history states over the wire (issue 12, item 4): two daphne processes on a private Redis and
a fresh PostgreSQL database (its ``jsonb`` text and the patch's own SQL, which the communicator
tests run on SQLite), members on both processes.
"""

import jsonpatch
import pytest

from tests import wsclient

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TIMEOUT = 10.0
FIRST = {
    "items": [{"id": "a", "text": "Milk ü", "done": False}, {"id": "b", "text": "Eggs", "done": True}],
    "big": 123456789012345678901234567890,
    "nested": {"k": [0, "", False, None]},
}


@pytest.fixture
def cluster(started):
    """Two daphne processes on one PostgreSQL database and a private Redis."""
    redis = started.redis()
    _, database = started.postgres()
    first, second = (started.daphne(database, redis.url) for _ in range(2))
    yield first, second
    for server in (first, second):
        assert "Traceback" not in server.log(), server.log()


async def test_history_and_restore_across_processes_on_postgresql(cluster):
    first, second = cluster
    async with wsclient.clients() as opened:
        alice = await wsclient.login(first.ws, first.token("alice"))
        opened.append(alice)
        session = (await alice.ok("create", {"title": "History", "data": FIRST}))["id"]
        await alice.ok("invite", {"username": "bob", "role": "editor"})
        await alice.ok("invite", {"username": "carol", "role": "viewer"})
        assert await alice.ok("save", {"message": "as created"}) == {"revision": 1, "version": 0}
        assert await alice.closed(TIMEOUT) == 1000

        alice = await wsclient.login(first.ws, first.token("alice"))
        bob = await wsclient.login(second.ws, second.token("bob"))
        carol = await wsclient.login(second.ws, second.token("carol"))
        opened.extend([alice, bob, carol])
        await alice.ok("join", {"session": session})
        await alice.ok("patch", {"version": 0, "ops": [{"op": "remove", "path": "/items/0"}]})
        await alice.ok("patch", {"version": 1, "ops": [{"op": "replace", "path": "/big", "value": 1}]})
        copies = {}
        for client in (bob, carol):
            copies[client.user["username"]] = await client.ok("join", {"session": session})
        await alice.push("presence", TIMEOUT, where=lambda d: d.get("joined", {}).get("username") == "carol")

        # Any member reads the history and a revision, from the other process.
        page = await carol.ok("revisions")
        assert [(r["number"], r["version"], r["message"], r["by"]) for r in page["revisions"]] == [
            (1, 0, "as created", alice.user)
        ]
        assert [(c["version"], c["by"], c["ops"][0]["op"]) for c in page["changes"]] == [
            (2, alice.user, "replace"),
            (1, alice.user, "remove"),
        ]
        assert (await carol.ok("revision", {"number": 1}))["data"] == FIRST

        # A viewer cannot restore; a stale version conflicts.
        assert (await carol.request("restore", {"number": 1, "version": 2}))["code"] == "permission_denied"
        stale = await bob.request("restore", {"number": 1, "version": 1})
        assert (stale["code"], stale["data"]) == ("conflict", {"version": 2})

        # The editor restores on the second process; the owner on the first and the viewer see it.
        reply = await bob.ok("restore", {"number": 1, "version": 2})
        assert (reply["version"], reply["revision"]) == (3, 1)
        for client in (alice, carol):
            pushed = (await client.push("patched", TIMEOUT))["data"]
            assert (pushed["version"], pushed["ops"], pushed["by"], pushed["restored"]) == (
                3,
                reply["ops"],
                bob.user,
                1,
            )
        assert jsonpatch.apply_patch(copies["carol"]["data"], reply["ops"]) == FIRST
        assert (await alice.ok("join", {"session": session}))["data"] == FIRST

        # The change is in the log: a join since replays it, the history names it.
        replay = await carol.ok("join", {"session": session, "since": 2})
        assert [(c["version"], c["by"]) for c in replay["changes"]] == [(3, bob.user)]
        latest = (await alice.ok("revisions", {"limit": 1}))["changes"]
        assert [(c["version"], c["restored"], c["by"]) for c in latest] == [(3, 1, bob.user)]
