"""Issue 13, item 2: a rolling restart of every process while 40 clients patch loses nothing.

Two daphne processes on PostgreSQL and a private Redis, started and restarted through
scripts/rolling_restart.py (its run-directory contract: ``<name>.pid`` and ``<name>.json``). 40
clients in 4 sessions append their own values to ``/items`` without pause, one request at a time,
retrying a conflict at the version the server reports (appends commute: a complete rebase). While
they write, ``rolling_restart.py restart`` restarts each process in turn (SIGTERM, drain, start,
``/healthz``). A client whose socket closes reconnects by itself to the other port (no proxy here),
re-joins with ``since`` and goes on; a patch it sent without getting the reply is sent again only
if the changes since show it was not applied.

Checked: every socket close a client saw was 1012 (never 1006); every client recovered by itself
(acknowledged patches after its last reconnect); every acknowledged patch is in the stored document
and in the change log exactly once, at the version its reply gave, and nothing else is (no patch
applied without its reply: the drain answers a request in flight before it closes). The recovery
times (close to re-joined) are printed; no assertion on them.
"""

import asyncio
import json
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from websockets.exceptions import InvalidHandshake

from sessions_app import protocol
from tests import live, wsclient

CLIENTS = 40
SESSIONS = 4
SCRIPT = [sys.executable, str(live.ROOT / "scripts" / "rolling_restart.py")]
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
PAUSE = 0.02  # seconds between a client's patches: 40 writers on a 2-core machine shared with others


class Writer:
    """One client: appends ``c<index>-<n>`` to its session's ``/items``; reconnects on a close."""

    def __init__(self, index: int, session: str, token: str, ports: list[int]) -> None:
        self.index, self.session, self.token, self.ports = index, session, token, ports
        self.port = ports[index % len(ports)]
        self.client: wsclient.Client | None = None
        self.version = 0
        self.n = 0
        self.acked: dict[str, int] = {}  # value -> the version its reply gave
        self.closes: list[int | None] = []
        self.recoveries: list[float] = []  # seconds from a close to the re-join's reply
        self.acked_since_recovery = 0
        self.applied_without_reply: list[str] = []

    async def connect(self, since: int | None) -> dict[str, Any]:
        """Log in on the other port first, then alternate, until a join succeeds; the join's reply."""
        attempt = 0
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, f"client {self.index} could not reconnect in 60 s"
            port = self.ports[(self.ports.index(self.port) + 1 + attempt) % len(self.ports)]
            attempt += 1
            try:
                client = await wsclient.login(f"ws://127.0.0.1:{port}", self.token)
                data = {"session": self.session} if since is None else {"session": self.session, "since": since}
                reply = await client.ok("join", data)
            except (wsclient.Closed, OSError, InvalidHandshake, TimeoutError, AssertionError):
                await asyncio.sleep(random.uniform(0.05, 0.25))  # jitter
                continue
            self.client, self.port = client, port
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
            else:
                assert answer["code"] == "conflict", answer
                self.version = answer["data"]["version"]
            await asyncio.sleep(PAUSE)
        await self.client.close()


def lagging(writers: list[Writer]) -> list[tuple[Any, ...]]:
    """(index, port, closes, acknowledged since the last recovery) of the writers not yet 3 patches on."""
    return [(w.index, w.port, w.closes, w.acked_since_recovery) for w in writers if w.acked_since_recovery < 3]


def applied_values(join_reply: dict[str, Any]) -> set[str]:
    """The values appended by the changes in a re-join's reply (or in its snapshot's document)."""
    if "changes" in join_reply:
        return {op["value"] for change in join_reply["changes"] for op in change["ops"]}
    return set(join_reply["data"]["items"])


def write_env(path: Path, env: dict[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in env.items() if "\n" not in value))
    path.chmod(0o600)


def script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SCRIPT, *args], cwd=live.ROOT, capture_output=True, text=True, timeout=300)  # noqa: S603


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_rolling_restart_under_40_writers_loses_and_duplicates_no_acknowledged_patch(started, tmp_path):
    _name, database_url = started.postgres()
    redis = started.redis()
    run_dir = tmp_path / "run"
    env_file = tmp_path / "daphne.env"
    write_env(env_file, live.base_env(database_url, redis.url, **SETTINGS))
    ports = [live.free_port(), live.free_port()]
    try:
        for number, port in enumerate(ports, 1):
            argv = [arg.replace("{port}", str(port)) for arg in live.Daphne.server_argv("project.asgi:application", ())]
            health = f"http://127.0.0.1:{port}/healthz"
            result = script("start", "--run-dir", str(run_dir), "--name", f"daphne-{number}", "--health", health,
                            "--env-file", str(env_file), "--", *argv)  # fmt: skip
            assert result.returncode == 0, result.stderr
        await run_writers(run_dir, database_url, ports)
    finally:
        script("stop", "--run-dir", str(run_dir), "--stop-timeout", "20")


async def run_writers(run_dir: Path, database_url: str, ports: list[int]) -> None:
    http = f"http://127.0.0.1:{ports[0]}"
    tokens = {name: live.http_json(http + "/api/v1/token/", {"username": name, "password": live.PASSWORD})[1]["access"]
              for name in live.USERS}  # fmt: skip
    owner = await wsclient.login(f"ws://127.0.0.1:{ports[0]}", tokens["alice"])
    sessions = []
    for number in range(SESSIONS):
        sessions.append((await owner.ok("create", {"title": f"rolling {number}", "data": {"items": []}}))["id"])
        for name in live.USERS[1:]:
            await owner.ok("invite", {"username": name, "role": "editor"})
    await owner.close()

    writers = [
        Writer(i, sessions[i % SESSIONS], tokens[live.USERS[i % len(live.USERS)]], ports) for i in range(CLIENTS)
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(writer.run(stop)) for writer in writers]
    try:
        await wait_for(lambda: all(w.acked for w in writers), 60, tasks, "every writer's first patch")
        restart = await asyncio.create_subprocess_exec(
            *SCRIPT, "restart", "--run-dir", str(run_dir), cwd=live.ROOT, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(restart.communicate(), 300)
        print(stderr.decode())
        assert restart.returncode == 0, stderr.decode()
        await wait_for(lambda: not lagging(writers), 60, tasks, lambda: f"every writer to go on: {lagging(writers)}")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

    for writer in writers:
        assert writer.closes, f"client {writer.index} never saw its process restart"
        assert set(writer.closes) == {protocol.CLOSE_SERVICE_RESTART}, (writer.index, writer.closes)
        assert writer.applied_without_reply == [], (writer.index, writer.applied_without_reply)
    recoveries = sorted(seconds for writer in writers for seconds in writer.recoveries)
    print(
        f"{len(recoveries)} recoveries from 1012 (close to re-joined): median {statistics.median(recoveries):.3f} s, "
        f"max {recoveries[-1]:.3f} s; {sum(len(w.acked) for w in writers)} acknowledged patches"
    )

    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        for session in sessions:
            acked = {value: version for w in writers if w.session == session for value, version in w.acked.items()}
            version, data = conn.execute(
                "SELECT version, data FROM sessions_app_session WHERE id = %s", (session,)
            ).fetchone()
            changes = conn.execute(
                "SELECT version, ops FROM sessions_app_change WHERE session_id = %s ORDER BY version", (session,)
            ).fetchall()
            items = data["items"]
            assert len(items) == len(set(items)), "a patch applied twice"
            assert set(items) == set(acked), "the document holds exactly the acknowledged patches"
            assert version == len(items)
            assert {ops[0]["value"]: v for v, ops in changes} == acked, "each change at its acknowledged version"
            assert [v for v, _ in changes] == list(range(1, version + 1))


async def wait_for(predicate: Any, timeout: float, tasks: list[asyncio.Task[None]], what: str) -> None:
    """Wait until ``predicate()``; fail on timeout or when a writer failed."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for task in tasks:
            if task.done():
                task.result()  # raises the writer's failure
        assert time.monotonic() < deadline, (
            f"timed out after {timeout} s waiting for {what if isinstance(what, str) else what()}"
        )
        await asyncio.sleep(0.1)


def test_stop_signals_only_the_recorded_command_and_waits_for_it(tmp_path):
    """A pid file whose process runs another command (the pid was reused) is not signalled."""
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "recorded"]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "other"])
    recorded = subprocess.Popen(argv)  # noqa: S603
    try:
        entry = {"argv": argv, "cwd": str(tmp_path), "health": "http://127.0.0.1:1/healthz", "env_file": None}
        (tmp_path / "daphne-1.json").write_text(json.dumps(entry))
        (tmp_path / "daphne-1.pid").write_text(f"{other.pid}\n")
        result = script("stop", "--run-dir", str(tmp_path), "--stop-timeout", "5")
        assert result.returncode == 0 and "daphne-1 is not running" in result.stderr, result.stderr
        assert other.poll() is None, "another command's process was signalled"
        (tmp_path / "daphne-1.pid").write_text(f"{recorded.pid}\n")
        result = script("stop", "--run-dir", str(tmp_path), "--stop-timeout", "5")
        assert result.returncode == 0, result.stderr
        assert recorded.wait(timeout=5) == -signal.SIGTERM
    finally:
        for process in (other, recorded):
            process.kill()
            process.wait()
