"""Issue 13, item 4: the channel layer on Redis Sentinel, and a failover under live sessions.

Real processes only (tests/live.py): a primary redis-server, a replica of it, three redis-sentinel
processes (Debian's package; quorum 2, a primary is down after 1 s without an answer), PostgreSQL,
and two daphne processes whose layer finds the primary through the sentinels (REDIS_SENTINELS).
Clients on both processes join one session and patch; the primary is killed with SIGKILL; the
sentinels promote the replica. Without restarting daphne the sessions go on: pushes cross between
the processes again, each client fills the gap the failover left by re-joining with ``since``
(docs/protocol.md, "Gaps"), and no acknowledged patch is lost. The interruption (from the kill
until a push crosses between the processes again) is measured and printed, never asserted.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests import live, wsclient

pytestmark = [pytest.mark.redis, pytest.mark.sentinel, pytest.mark.slow]

SLOW = 30.0  # seconds: the bound on any one wait while the layer fails over (a hang, not a timing)


class Copy:
    """A client's copy of the session's ``/log``, kept by version as docs/client.md keeps it:
    a push at the next version is applied, one further on is a gap, filled by re-joining with
    ``since``; versions already held are dropped."""

    def __init__(self, client: wsclient.Client, session: str, snapshot: dict[str, Any]) -> None:
        self.client, self.session = client, session
        self.version, self.log = snapshot["version"], list(snapshot["data"]["log"])
        self.gaps = 0

    def apply(self, version: int, ops: list[dict[str, Any]]) -> None:
        assert version == self.version + 1, (version, self.version)
        for op in ops:
            assert op["op"] == "add" and op["path"] == "/log/-", op
            self.log.append(op["value"])
        self.version = version

    async def take(self, version: int, ops: list[dict[str, Any]]) -> None:
        """A change at ``version`` (a push, or this client's own acknowledged patch)."""
        if version <= self.version:
            return
        if version > self.version + 1:
            self.gaps += 1
            await self.rejoin()
        if version == self.version + 1:
            self.apply(version, ops)

    async def rejoin(self) -> None:
        reply = await self.client.ok("join", {"session": self.session, "since": self.version}, timeout=SLOW)
        if "changes" in reply:
            for change in reply["changes"]:
                if change["version"] > self.version:
                    self.apply(change["version"], change["ops"])
        else:  # a snapshot: the change log no longer reaches back to our version
            self.version, self.log = reply["version"], list(reply["data"]["log"])

    async def catch_up(self) -> None:
        """Apply the pushes this client has received so far, in order."""
        pushes, self.client.pushes = self.client.pushes, []
        for push in pushes:
            if push.get("state") == "patched":
                await self.take(push["data"]["version"], push["data"]["ops"])


async def pump(client: wsclient.Client, wait: float) -> None:
    """Read what arrives for ``wait`` seconds into ``client.pushes``."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        try:
            client.pushes.append(await client.recv(left))
        except TimeoutError:
            return


def pushed(client: wsclient.Client, version: int) -> bool:
    return any(p.get("state") == "patched" and p["data"]["version"] == version for p in client.pushes)


async def arrives(client: wsclient.Client, version: int) -> None:
    """Wait (at most ``SLOW`` s) for the ``patched`` push of ``version``, keeping every push in order."""
    deadline = time.monotonic() + SLOW
    while not pushed(client, version):
        assert time.monotonic() < deadline, f"no push of version {version} reached {client.user}"
        await pump(client, 0.2)


def health(server: live.Server) -> tuple[int, Any]:
    try:
        return server.get("/healthz")
    except OSError as error:  # no answer at all: recorded, and fails the test below
        return 0, repr(error)


async def watch(servers: list[live.Server], sentinel: live.RedisSentinel, seen: list[Any], stop: asyncio.Event) -> None:
    """Record ``(time.monotonic(), port, status, body)`` of each server's /healthz and
    ``(time.monotonic(), "primary", port)`` of the sentinel's primary until ``stop``."""
    while not stop.is_set():
        for server in servers:
            status, body = await asyncio.to_thread(health, server)
            seen.append((time.monotonic(), server.port, status, body))
        port = await asyncio.to_thread(sentinel.primary_port)
        seen.append((time.monotonic(), "primary", port))
        await asyncio.sleep(0.2)


LAYERS = {
    # The default: channels_redis' core layer inside FanoutChannelLayer (one reader per process).
    "core": {"CHANNEL_LAYER_BACKEND": "channels_redis.core.RedisChannelLayer"},
    "pubsub": {"CHANNEL_LAYER_BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"},
    # The core layer alone, as stock Channels uses it: one receive loop per connection.
    "core-stock": {"CHANNEL_LAYER_BACKEND": "channels_redis.core.RedisChannelLayer", "CHANNEL_LAYER_FANOUT": 0},
}


@pytest.mark.parametrize("layer", LAYERS)
async def test_a_primary_killed_mid_session_fails_over_and_the_sessions_go_on(started, capsys, layer):
    primary = started.redis()
    replica = started.replica(primary)
    sentinels = started.sentinels(primary, count=3, quorum=2, down_after_ms=1000, failover_timeout_ms=3000)
    _, database = started.postgres()
    settings = {
        "REDIS_SENTINELS": ",".join(sentinel.address for sentinel in sentinels),
        "REDIS_SENTINEL_MASTER": sentinels[0].master,
        "SESSIONS_RATE_LIMIT": 10_000,
        "SESSIONS_RATE_BURST": 10_000,
        **LAYERS[layer],
    }
    first = started.daphne(database, None, **settings)
    second = started.another(first)
    pids = (first.pid, second.pid)

    async with wsclient.clients() as opened:
        # Writers alice (first process) and bob (second); carol (first) and dave (second) only read.
        homes = {"alice": first, "bob": second, "carol": first, "dave": second}
        clients = {name: await wsclient.login(server.ws, server.token(name)) for name, server in homes.items()}
        opened += clients.values()
        # erin, on the second process, is in no session: pushes addressed to a user (an invite)
        # come through the process's account listener (sessions_app/process.py).
        erin = await wsclient.login(second.ws, second.token("erin"))
        opened.append(erin)
        alice = clients["alice"]
        snapshot = await alice.ok("create", {"title": "failover", "data": {"log": []}})
        session = snapshot["id"]
        for name in ("bob", "carol", "dave"):
            await alice.ok("invite", {"username": name, "role": "editor"})
        copies = {"alice": Copy(alice, session, snapshot)}
        for name in ("bob", "carol", "dave"):
            copies[name] = Copy(clients[name], session, await clients[name].ok("join", {"session": session}))
        other_side = {"alice": "dave", "bob": "carol"}  # a reader on the other process

        acked: list[tuple[int, str]] = []  # (version, value) of every acknowledged patch, in order

        async def patch(writer: str) -> int:
            value = f"{writer}-{len(acked)}"
            version = acked[-1][0] if acked else 0
            ops = [{"op": "add", "path": "/log/-", "value": value}]
            reply = await clients[writer].ok("patch", {"version": version, "ops": ops}, timeout=SLOW)
            acked.append((reply["version"], value))
            clients[writer].pushes.append({"state": "patched", "data": {"version": reply["version"], "ops": ops}})
            return reply["version"]

        # Before: pushes cross both ways through the primary the sentinels named.
        for writer in ("alice", "bob"):
            await arrives(clients[other_side[writer]], await patch(writer))
        for server in (first, second):
            status, body = health(server)
            assert status == 200, body

        seen: list[Any] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch([first, second], sentinels[0], seen, stop))
        killed = time.monotonic()
        primary.kill()

        # During: the writers take turns; the failover is over for the sessions when a patch made
        # on one process reaches the reader on the other as a push.
        resumed = None
        turn = 0
        while resumed is None:
            assert time.monotonic() - killed < 120, "pushes never crossed between the processes again"
            writer = ("alice", "bob")[turn % 2]
            turn += 1
            version = await patch(writer)
            reader = clients[other_side[writer]]
            await pump(reader, 0.2)
            if pushed(reader, version):
                resumed = time.monotonic() - killed
        patched_during = len(acked) - 2

        # After: every later patch reaches every other client as a push.
        for turn in range(6):
            writer = ("alice", "bob")[turn % 2]
            version = await patch(writer)
            for name, client in clients.items():
                if name != writer:
                    await arrives(client, version)

        # The account listener got through the failover too: an invite reaches erin.
        await alice.ok("invite", {"username": "erin", "role": "viewer"}, timeout=SLOW)
        added = await erin.push("session_added", timeout=SLOW)
        assert added["data"]["session"] == session, added

        for server in (first, second):
            live.wait_until(lambda s=server: health(s)[0] == 200, SLOW, f"/healthz of {server.port} to answer 200")
        stop.set()
        await watcher

        # The sentinels promoted the replica, and the daphne processes never restarted.
        assert sentinels[0].primary_port() == replica.port
        assert replica.info("replication")["role"] == "master"
        assert (first.pid, second.pid) == pids
        assert first.process.poll() is None and second.process.poll() is None

        # Every client recovers by version, to a copy with every acknowledged patch in order.
        for copy in copies.values():
            await copy.catch_up()
            await copy.rejoin()  # nothing left to take: a check that the copy is current
        values = [value for _, value in acked]
        assert [version for version, _ in acked] == list(range(1, len(acked) + 1))
        for name, copy in copies.items():
            assert (copy.version, copy.log) == (len(acked), values), name
        fresh = await wsclient.login(first.ws, first.token("carol"))
        opened.append(fresh)
        final = await fresh.ok("join", {"session": session})
        assert (final["version"], final["data"]["log"]) == (len(acked), values)

    # /healthz answered throughout: 503 naming the channel layer while it failed over, 200 after.
    answers = [entry for entry in seen if entry[1] != "primary"]
    assert all(status in (200, 503) for _, _, status, _ in answers), [a for a in answers if a[2] not in (200, 503)]
    down = [body for _, _, status, body in answers if status == 503]
    assert down, "no /healthz answer reported the failover"
    assert all(body["channel_layer"]["ok"] is False and body["database"]["ok"] is True for body in down), down
    switched = next((at - killed for at, kind, port, *_ in seen if kind == "primary" and port == replica.port), None)
    # Per process: from the kill to its first 200 after its last 503.
    healthy_again = []
    for server in (first, second):
        mine = [(at, status) for at, port, status, _ in answers if port == server.port]
        last_down = max((at for at, status in mine if status == 503), default=killed)
        healthy_again.append(min((at for at, status in mine if at > last_down), default=float("nan")) - killed)
    for server in (first, second):
        log = server.log()
        assert "Exception inside application" not in log, log[-4000:]
    with capsys.disabled():
        print(
            f"\nsentinel failover ({layer}): pushes crossed again {resumed:.2f} s after the primary was killed"
            f" ({patched_during} patches acknowledged meanwhile); sentinel 1 named the replica"
            f" after {switched if switched is None else round(switched, 2)} s; /healthz 200 again after"
            f" {' and '.join(f'{t:.2f}' for t in healthy_again)} s; {sum(c.gaps for c in copies.values())} gaps"
            " filled by version"
        )
