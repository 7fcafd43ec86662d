"""Writers that patch without pause through a rolling restart, and the checks of what they saw and
what was stored: shared by tests/test_rolling_restart.py (two daphnes on loopback ports) and
tests/test_production.py (the production layout behind nginx).

``CLIENTS`` clients in ``SESSIONS`` sessions append their own values (``c<index>-<n>``) to
``/items``, one request at a time, retrying a conflict at the version the server reports (appends
commute: a complete rebase). A client whose socket closes reconnects by itself (to the next of its
URLs; behind nginx, the one URL), re-joins with ``since`` and goes on; a patch it sent without
getting the reply is sent again only if the changes since show it was not applied.

``check_writers``: every socket close a client saw was 1012 (never 1006), no patch was applied
without its reply (the drain answers a request in flight before it closes); the recovery times
(close to re-joined) are printed, never asserted. ``check_stored``: every acknowledged patch is in
the stored document and in the change log exactly once, at the version its reply gave, and nothing
else is.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import InvalidHandshake

from sessions_app import protocol
from tests import live, wsclient

CLIENTS = 40
SESSIONS = 4
# The servers' settings for these writers: no rate limit in their way, the whole change log kept,
# a presence heartbeat short enough for a dead process's rows to go quickly.
SETTINGS = {
    "SESSIONS_RATE_LIMIT": 10_000,
    "SESSIONS_RATE_BURST": 10_000,
    "SESSIONS_MAX_CONNECTIONS_PER_USER": 100,
    "SESSIONS_CHANGE_LOG_KEEP": 100_000,
    "SESSIONS_CHANGE_LOG_BYTES": 64 * 1024 * 1024,
    "SESSIONS_DRAIN_TIMEOUT": 10,
    "SESSIONS_PRESENCE_HEARTBEAT": 1,
    "SESSIONS_PRESENCE_TTL": 5,
}
PAUSE = 0.02  # seconds between a client's patches (about): 40 writers on a 2-core machine shared with others


class Writer:
    """One client: appends ``c<index>-<n>`` to its session's ``/items``; reconnects on a close.

    ``urls``: the servers' WebSocket base URLs (``ws://host:port``); the client starts on
    ``urls[index % len(urls)]`` and reconnects to the next one first, then each in turn."""

    def __init__(self, index: int, session: str, token: str, urls: list[str]) -> None:
        self.index, self.session, self.token, self.urls = index, session, token, urls
        self.url = urls[index % len(urls)]
        self.client: wsclient.Client | None = None
        self.version = 0
        self.n = 0
        self.acked: dict[str, int] = {}  # value -> the version its reply gave
        self.closes: list[int | None] = []
        self.recoveries: list[float] = []  # seconds from a close to the re-join's reply
        self.acked_since_recovery = 0
        self.applied_without_reply: list[str] = []
        self.failed_attempts = 0  # reconnects refused or cut (502 from a proxy, a refused port ...)

    async def connect(self, since: int | None) -> dict[str, Any]:
        """Log in on the next URL first, then each in turn, until a join succeeds; the join's reply."""
        attempt = 0
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, f"client {self.index} could not reconnect in 60 s"
            url = self.urls[(self.urls.index(self.url) + 1 + attempt) % len(self.urls)]
            attempt += 1
            try:
                client = await wsclient.login(url, self.token)
                data = {"session": self.session} if since is None else {"session": self.session, "since": since}
                reply = await client.ok("join", data)
            except (wsclient.Closed, OSError, InvalidHandshake, TimeoutError, AssertionError):
                self.failed_attempts += 1
                await asyncio.sleep(random.uniform(0.05, 0.25))  # jitter
                continue
            self.client, self.url = client, url
            return reply

    async def run(self, stop: asyncio.Event) -> None:
        reply = await self.connect(None)
        self.version = reply["version"]
        while not stop.is_set():
            value = f"c{self.index}-{self.n}"
            try:
                answer = await self.client.request(
                    "patch", {"version": self.version, "ops": [{"op": "add", "path": "/items/-", "value": value}]}
                )
            except wsclient.Closed as closed:
                self.closes.append(closed.code)
                began = time.monotonic()
                reply = await self.connect(self.version)
                self.recoveries.append(time.monotonic() - began)
                self.acked_since_recovery = 0
                if value in applied_values(reply):
                    self.applied_without_reply.append(value)
                    self.n += 1
                self.version = reply["version"]
                continue
            finally:
                self.client.pushes.clear()  # the others' patched pushes: versions come from replies
            if answer["state"] == "patch":
                self.version = answer["data"]["version"]
                self.acked[value] = self.version
                self.acked_since_recovery += 1
                self.n += 1
                # The winner of a version learns the next one first (its reply comes before the
                # others' conflicts): were it to go on at once, the same writers would win every
                # race of a busy session (seen on a loaded machine: a writer had no patch
                # acknowledged in two minutes). So a winner waits longer than a loser, at random.
                await asyncio.sleep(random.uniform(PAUSE, 3 * PAUSE))
            else:
                assert answer["code"] == "conflict", answer
                self.version = answer["data"]["version"]
                await asyncio.sleep(random.uniform(0, PAUSE))
        await self.client.close()


def applied_values(join_reply: dict[str, Any]) -> set[str]:
    """The values appended by the changes in a re-join's reply (or in its snapshot's document)."""
    if "changes" in join_reply:
        return {op["value"] for change in join_reply["changes"] for op in change["ops"]}
    return set(join_reply["data"]["items"])


def lagging(writers: list[Writer]) -> list[tuple[Any, ...]]:
    """(index, URL, closes, acknowledged since the last recovery) of the writers that have not yet
    had a patch acknowledged since their last reconnect (recovered: re-joined and writing again).
    One, not more: ten writers race for each version of a session, and on a loaded machine, with a
    session's writers on two processes (behind nginx), one of them may win only a few races a minute."""
    return [(w.index, w.url, w.closes, w.acked_since_recovery) for w in writers if w.acked_since_recovery < 1]


async def wait_for(predicate: Any, timeout: float, tasks: list[asyncio.Task[None]], what: Any) -> None:
    """Wait until ``predicate()``; fail on timeout or when a writer failed. ``what``: a text, or a
    function returning one (called on failure)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for task in tasks:
            if task.done():
                task.result()  # raises the writer's failure
        assert time.monotonic() < deadline, (
            f"timed out after {timeout} s waiting for {what if isinstance(what, str) else what()}"
        )
        await asyncio.sleep(0.1)


async def prepare(http: str, ws: str, urls: list[str]) -> tuple[list[str], list[Writer]]:
    """Sign in every user of tests/live.py over ``http``, create SESSIONS sessions (alice's, every
    other user invited as editor) over ``ws``; returns the session ids and CLIENTS writers on ``urls``."""
    tokens = {name: live.http_json(http + "/api/v1/token/", {"username": name, "password": live.PASSWORD})[1]["access"]
              for name in live.USERS}  # fmt: skip
    owner = await wsclient.login(ws, tokens["alice"])
    sessions = []
    for number in range(SESSIONS):
        sessions.append((await owner.ok("create", {"title": f"rolling {number}", "data": {"items": []}}))["id"])
        for name in live.USERS[1:]:
            await owner.ok("invite", {"username": name, "role": "editor"})
    await owner.close()
    writers = [Writer(i, sessions[i % SESSIONS], tokens[live.USERS[i % len(live.USERS)]], urls) for i in range(CLIENTS)]
    return sessions, writers


async def write_through(writers: list[Writer], restart: Callable[[], Any]) -> None:
    """Run the writers; once each has an acknowledged patch, await ``restart()`` (the rolling
    restart, which fails the test by itself); then wait until every writer has gone on, and stop them."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(writer.run(stop)) for writer in writers]
    try:
        await wait_for(
            lambda: all(w.acked for w in writers), 120, tasks,
            lambda: f"every writer's first patch: none yet for {[w.index for w in writers if not w.acked]}",
        )  # fmt: skip
        await restart()
        await wait_for(lambda: not lagging(writers), 120, tasks, lambda: f"every writer to go on: {lagging(writers)}")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)


def check_writers(writers: list[Writer]) -> str:
    """Each writer saw its process restart, only with 1012, and nothing applied without its reply;
    returns the recovery figures (a line to print)."""
    for writer in writers:
        assert writer.closes, f"client {writer.index} never saw its process restart"
        assert set(writer.closes) == {protocol.CLOSE_SERVICE_RESTART}, (writer.index, writer.closes)
        assert writer.applied_without_reply == [], (writer.index, writer.applied_without_reply)
    recoveries = sorted(seconds for writer in writers for seconds in writer.recoveries)
    after = sorted(writer.acked_since_recovery for writer in writers)
    return (
        f"{len(recoveries)} recoveries from 1012 (close to re-joined): median {statistics.median(recoveries):.3f} s, "
        f"max {recoveries[-1]:.3f} s; {sum(w.failed_attempts for w in writers)} failed reconnect attempts; "
        f"{sum(len(w.acked) for w in writers)} acknowledged patches ({after[0]} to {after[-1]} per writer after "
        f"its last recovery, median {statistics.median(after)})"
    )


def check_stored(query: Callable[..., list[tuple[Any, ...]]], sessions: list[str], writers: list[Writer]) -> None:
    """Every acknowledged patch stored once, at its acknowledged version, and nothing else;
    ``query(sql, params)``: rows from the servers' PostgreSQL database."""
    for session in sessions:
        acked = {value: version for w in writers if w.session == session for value, version in w.acked.items()}
        [(version, data)] = query("SELECT version, data FROM sessions_app_session WHERE id = %s", (session,))
        changes = query(
            "SELECT version, ops FROM sessions_app_change WHERE session_id = %s ORDER BY version", (session,)
        )
        items = data["items"]
        assert len(items) == len(set(items)), "a patch applied twice"
        assert set(items) == set(acked), "the document holds exactly the acknowledged patches"
        assert version == len(items)
        assert {ops[0]["value"]: v for v, ops in changes} == acked, "each change at its acknowledged version"
        assert [v for v, _ in changes] == list(range(1, version + 1))
