"""Issue 5, item 1: the channel layer's Redis crashes and comes back, under a live daphne.

A private redis-server (tests.live) is killed and started again on the same port while clients
stay connected. While it is down, replies to the asking connection still work and committed
changes are kept; a join that cannot subscribe answers ``unavailable`` and closes 4503. When it is
back, new, reconnected and still-open connections get their pushes again without restarting daphne.
"""

import signal
import time

import pytest

from tests import wsclient

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SETTINGS = {"SESSIONS_PRESENCE_HEARTBEAT": 0.5, "SESSIONS_PRESENCE_TTL": 5}


async def shared_session(server, owner, member):
    """``owner`` creates a session ``{"n": 0}`` and ``member`` joins it; returns the session id."""
    snapshot = await owner.ok("create", {"title": "faults", "data": {"n": 0}})
    await owner.ok("invite", {"username": member.user["username"], "role": "editor"})
    await member.ok("join", {"session": snapshot["id"]})
    return snapshot["id"]


# The default layer (FanoutChannelLayer around channels_redis' core layer: one reader per process),
# and the core layer alone (CHANNEL_LAYER_FANOUT=0: a receive loop per connection, which re-adds
# the connection's groups when Redis answers again, sessions_app/channelreader.py).
@pytest.mark.parametrize("fanout", [1, 0])
async def test_replies_commits_and_joins_while_redis_is_down_and_pushes_after_it_is_back(started, fanout):
    redis = started.redis()
    server = started.daphne(started.sqlite(), redis.url, CHANNEL_LAYER_FANOUT=fanout, **SETTINGS)
    async with wsclient.clients() as opened:
        alice = await wsclient.login(server.ws, server.token("alice"))
        bob = await wsclient.login(server.ws, server.token("bob"))
        opened += [alice, bob]
        session = await shared_session(server, alice, bob)
        assert (await alice.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/n", "value": 1}]})) == {
            "version": 1
        }
        assert (await bob.push("patched"))["data"]["version"] == 1

        redis.stop(signal.SIGKILL)

        # Replies to the connection that asked still work; patches commit; the handler survives
        # its failed broadcasts (two in a row).
        assert "server_time" in await alice.ok("ping")
        for version in (1, 2):
            ops = [{"op": "replace", "path": "/n", "value": version + 1}]
            assert await alice.ok("patch", {"version": version, "ops": ops}) == {"version": version + 1}
        assert "server_time" in await bob.ok("ping")
        assert "channel layer unavailable (" in server.log()  # once per outage (sessions_app.oplog)

        # A join that cannot subscribe to the session's group: unavailable, then 4503.
        bob_again = await wsclient.login(server.ws, server.token("bob"))
        opened.append(bob_again)
        error = await bob_again.request("join", {"session": session})
        assert error["state"] == "error", error
        assert error["code"] == "unavailable", error
        assert error["request_state"] == "join"
        assert await bob_again.closed() == 4503

        redis.start()  # same port, empty: every group membership is gone

        # A reconnecting client resumes with `since` and sees the changes committed during the outage.
        bob_new = await wsclient.login(server.ws, server.token("bob"))
        opened.append(bob_new)
        resumed = await bob_new.ok("join", {"session": session, "since": 1})
        assert [change["version"] for change in resumed["changes"]] == [2, 3]
        assert [change["ops"][0]["value"] for change in resumed["changes"]] == [2, 3]

        # Pushes flow again to the new connection ...
        ops = [{"op": "replace", "path": "/n", "value": 4}]
        assert await alice.ok("patch", {"version": 3, "ops": ops}) == {"version": 4}
        pushed = await bob_new.push("patched")
        assert pushed["data"]["version"] == 4
        assert pushed["data"]["ops"] == ops

        # ... and to the connection that stayed open the whole time, once its layer receive loop
        # noticed the outage and added its groups again (retry backoff up to 5 s).
        version = 4
        deadline = time.monotonic() + 15
        seen = None
        while seen is None and time.monotonic() < deadline:
            try:
                seen = await bob.push("patched", timeout=1)
            except TimeoutError:
                ops = [{"op": "replace", "path": "/n", "value": version + 1}]
                assert await alice.ok("patch", {"version": version, "ops": ops}) == {"version": version + 1}
                version += 1
        assert seen is not None, "the connection that stayed open never got a push after Redis came back"
        # Its copy is at version 1: the push's version shows the gap, and `since` fills it.
        assert seen["data"]["version"] > 2
        caught_up = await bob.ok("join", {"session": session, "since": 1})
        assert [change["version"] for change in caught_up["changes"]] == list(range(2, version + 1))
        snapshot = await bob.ok("join", {"session": session, "since": version + 1})
        assert snapshot["data"] == {"n": version}
        assert snapshot["version"] == version

        # Presence pushes flow again too: the reconnected bob leaving is seen by alice.
        await bob_new.close()
        await alice.no_push("presence", wait=0.5, where=lambda d: "left" in d)  # bob's first tab is still there
        await bob.close()
        left = await alice.push("presence", where=lambda d: "left" in d)
        assert left["data"]["left"]["username"] == "bob"

    # Warnings with tracebacks are expected (each failed layer call is logged); an exception that
    # escaped the application (daphne's "Exception inside application", a 1011 close) is not.
    log = server.log()
    assert "Exception inside application" not in log, log[-4000:]
