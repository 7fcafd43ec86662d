"""Sustained load on one daphne process (issue 5, item 11).

N authenticated WebSocket connections (default 2000) in sessions of 10 members, each connection
patching its own key of the shared document at a steady rate (default one patch every 5 s, retried
after a jittered pause on ``conflict``), for a fixed duration (default 300 s). Reports:

- errors: anything but a successful reply or a ``conflict`` (error frames, closes, connect
  failures, replies slower than ``--reply-timeout``), which must be zero;
- every session's final version equals the number of patches acknowledged in it (nothing lost);
- p50 / p90 / p99 / max reply latency of ``patch`` (send to reply, conflicts' retries included as
  separate requests);
- RSS of the daphne process sampled every ``--sample-every`` seconds, its growth after warm-up,
  and the memory per connection ((RSS with every connection joined - RSS idle) / N).

Loopback only, bounded in count and time: it starts its own daphne (on a fresh SQLite database in
a temporary folder, or ``--database-url``) and, by default, a private redis-server on a free port
for the channel layer, as in production (``--layer memory`` uses Channels' in-memory layer, whose
every ``receive`` and ``group_send`` scans all channels and groups: its cost per message grows with
the number of connections). The per-user connection limit, the rate limit and the token lifetime
are raised for the run; everything is stopped at the end. The server is pinned to CPU 0 and this
client to CPU 1 when the machine has two or more.

    .venv/bin/python bench/load.py                                   # 2000 connections, 5 minutes
    .venv/bin/python bench/load.py --connections 200 --duration 30   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "load-Pw-16180"
SOCKET_PATH = "/api/v1/socket"


# --- the server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(args: argparse.Namespace, database_url: str, secret: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL", "CHANNEL_LAYER_BACKEND"}}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_SECRET_KEY": secret,
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            # Raised for the run: one user holds a connection in every session of its column.
            "SESSIONS_MAX_CONNECTIONS_PER_USER": str(args.connections + 10),
            "SESSIONS_MAX_SESSIONS_PER_USER": str(args.connections + 10),
            "SESSIONS_RATE_LIMIT": "1000",
            "SESSIONS_RATE_BURST": "1000",
            "JWT_ACCESS_LIFETIME": str(int(args.duration + 3600)),
        }
    )
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    return env


def manage(env: dict[str, str], *argv: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *argv], cwd=ROOT, env=env, check=True, capture_output=True, timeout=600
    )


def prepare(env: dict[str, str], users: int) -> None:
    """Migrate and create the users (one password hash, reused)."""
    manage(env, "migrate", "--noinput")
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.auth.hashers import make_password\n"
        "User = get_user_model()\n"
        f"hashed = make_password({PASSWORD!r})\n"
        f"names = ['load{{:03d}}'.format(i) for i in range({users})]\n"
        "User.objects.filter(username__in=names).delete()\n"
        "User.objects.bulk_create([User(username=n, password=hashed) for n in names])\n"
    )
    manage(env, "shell", "-c", code)


class Daphne:
    def __init__(self, env: dict[str, str], log_path: Path, pin: bool) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "project.asgi:application"]
        if pin and shutil.which("taskset"):
            argv = ["taskset", "-c", "0", *argv]
        self.log = open(log_path, "wb")  # closed in stop()
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited: {log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("daphne did not start within 60 s") from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        """The daphne interpreter's pid (taskset execs it, so the pid is the same)."""
        return self.process.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A private redis-server (no persistence) on a free port; never the machine's shared one."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*argv, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


def obtain_token(port: int, username: str) -> str:
    body = json.dumps({"username": username, "password": PASSWORD}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/token/", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access"]


# --- the clients --------------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    acked: int = 0
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)
    pushes: int = 0
    gaps: int = 0

    def error(self, text: str) -> None:
        if len(self.errors) < 10_000:
            self.errors.append(text)


class Conn:
    """One connection: a reader task routes replies (by id) and pushes (the session version)."""

    _ids = itertools.count(1)

    def __init__(self, ws: Any, stats: Stats) -> None:
        self.ws = ws
        self.stats = stats
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.version = 0
        self.closed: int | None = None
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                rid = frame.get("id")
                if rid is not None and rid in self.waiting:
                    self.waiting.pop(rid).set_result(frame)
                elif frame.get("state") == "patched":
                    self.stats.pushes += 1
                    version = frame["data"]["version"]
                    if version > self.version + 1:
                        self.stats.gaps += 1
                    self.version = max(self.version, version)
                elif frame.get("state") == "error":
                    self.stats.error(f"unsolicited error {frame.get('code')}")
        except ConnectionClosed as exc:
            self.closed = exc.rcvd.code if exc.rcvd else 1006
        finally:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"closed {self.closed}"))

    async def request(self, state: str, data: dict[str, Any], timeout: float) -> dict[str, Any]:
        rid = f"q{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        await self.ws.send(json.dumps({"state": state, "data": data, "id": rid}))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.waiting.pop(rid, None)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self.reader.cancel()


async def open_conn(port: int, token: str, stats: Stats) -> Conn:
    ws = await connect(
        f"ws://127.0.0.1:{port}{SOCKET_PATH}", compression=None, open_timeout=30, ping_interval=None, max_queue=None
    )
    await ws.send(json.dumps({"token": token}))
    first = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if first.get("state") != "initialised":
        raise RuntimeError(f"handshake failed: {first}")
    return Conn(ws, stats)


async def patcher(
    conn: Conn, key: str, args: argparse.Namespace, stop_at: float, acked: dict[str, int], sid: str
) -> None:
    """Patch ``/k/<key>`` every ``interval`` seconds until ``stop_at``; rebase and retry on conflict."""
    stats = conn.stats
    await asyncio.sleep(random.uniform(0, args.interval))  # spread the connections over the interval
    value = 0
    next_at = time.monotonic()
    while time.monotonic() < stop_at and conn.closed is None:
        value += 1
        for _attempt in range(20):
            ops = [{"op": "replace", "path": f"/k/{key}", "value": value}]
            started = time.perf_counter()
            try:
                reply = await conn.request("patch", {"version": conn.version, "ops": ops}, args.reply_timeout)
            except (TimeoutError, ConnectionError, ConnectionClosed) as exc:
                stats.error(f"patch: {type(exc).__name__} {exc}")
                return
            stats.latencies.append(time.perf_counter() - started)
            if reply.get("state") == "patch":
                conn.version = max(conn.version, reply["data"]["version"])
                stats.acked += 1
                acked[sid] += 1
                break
            if reply.get("code") == "conflict":
                stats.conflicts += 1
                conn.version = max(conn.version, reply["data"]["version"])
                # Rebase on the current version after a jittered, growing pause, as the browser
                # client does: retrying at once makes every member of a busy session collide again.
                await asyncio.sleep(random.uniform(0, min(1.0, 0.02 * 2**_attempt)))
                continue
            stats.error(f"patch error {reply.get('code')}: {reply.get('error')}")
            break
        else:
            stats.error("patch: 20 conflicts in a row")
        next_at += args.interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace, server: Daphne, tokens: list[str]) -> dict[str, Any]:
    stats = Stats()
    size = args.session_size
    sessions = args.connections // size
    report: dict[str, Any] = {"connections": sessions * size, "sessions": sessions, "session_size": size}
    rss_idle = server.rss_kib()
    report["rss_idle_kib"] = rss_idle

    # Connect everyone (in batches), then each session's first member creates it and invites the rest.
    started = time.monotonic()
    conns: list[Conn] = []
    semaphore = asyncio.Semaphore(args.connect_concurrency)

    async def one(index: int) -> Conn:
        async with semaphore:
            return await open_conn(server.port, tokens[index % size], stats)

    try:
        conns = list(await asyncio.gather(*(one(i) for i in range(sessions * size))))
    except Exception:
        for conn in conns:
            await conn.close()
        raise
    report["connect_seconds"] = round(time.monotonic() - started, 1)
    session_ids: list[str] = []
    try:
        started = time.monotonic()

        async def setup(group: int) -> str:
            async with semaphore:
                members = conns[group * size : (group + 1) * size]
                created = await members[0].request("create", {"title": f"load {group}", "data": {"k": {}}}, 60)
                sid = created["data"]["id"]
                for member in range(1, size):
                    reply = await members[0].request("invite", {"username": f"load{member:03d}", "role": "editor"}, 60)
                    assert reply["state"] == "invite", reply
                initial = {str(m): 0 for m in range(size)}
                members[0].version = (
                    await members[0].request(
                        "patch", {"version": 0, "ops": [{"op": "replace", "path": "/k", "value": initial}]}, 60
                    )
                )["data"]["version"]
                for member in members[1:]:
                    joined = await member.request("join", {"session": sid}, 60)
                    assert joined["state"] == "join", joined
                    member.version = joined["data"]["version"]
                return sid

        session_ids = list(await asyncio.gather(*(setup(g) for g in range(sessions))))
        report["setup_seconds"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(2)
        rss_connected = server.rss_kib()
        report["rss_connected_kib"] = rss_connected
        report["per_connection_kib"] = round((rss_connected - rss_idle) / len(conns), 1)

        # The steady run, with RSS sampled every `sample_every` seconds.
        acked = {sid: 1 for sid in session_ids}  # the initial patch
        stop_at = time.monotonic() + args.duration
        run_started = time.monotonic()
        cpu_started = server.cpu_seconds()
        tasks = [
            asyncio.ensure_future(patcher(conn, str(i % size), args, stop_at, acked, session_ids[i // size]))
            for i, conn in enumerate(conns)
        ]
        samples: list[tuple[float, int]] = []
        while time.monotonic() < stop_at:
            samples.append((round(time.monotonic() - run_started, 1), server.rss_kib()))
            print(
                f"  t={samples[-1][0]:6.1f}s rss={samples[-1][1] / 1024:7.1f} MiB acked={stats.acked} "
                f"conflicts={stats.conflicts} errors={len(stats.errors)}",
                flush=True,
            )
            await asyncio.sleep(min(args.sample_every, max(0.0, stop_at - time.monotonic())))
        await asyncio.wait_for(asyncio.gather(*tasks), args.reply_timeout * 3 + args.interval + 30)
        elapsed = time.monotonic() - run_started
        samples.append((round(elapsed, 1), server.rss_kib()))
        report["cpu_seconds_server"] = round(server.cpu_seconds() - cpu_started, 1)
        report["duration_seconds"] = round(elapsed, 1)

        # Nothing acknowledged is lost: each session's version is its number of acknowledged patches.
        await asyncio.sleep(1)
        lost = 0
        for group, sid in enumerate(session_ids):
            snapshot = await conns[group * size].request("join", {"session": sid, "since": 10**12}, 60)
            if snapshot["data"]["version"] != acked[sid]:
                lost += 1
                stats.error(f"session {sid}: version {snapshot['data']['version']} != acked {acked[sid]}")
        report["sessions_with_lost_or_extra_patches"] = lost
        closed = [conn.closed for conn in conns if conn.closed is not None]
        for code in closed:
            stats.error(f"connection closed {code}")
    finally:
        await asyncio.gather(*(conn.close() for conn in conns))

    warm = [rss for t, rss in samples if t >= args.warmup] or [samples[-1][1]]
    report.update(
        {
            "acked": stats.acked,
            "patches_per_second": round(stats.acked / max(report["duration_seconds"], 0.001), 1),
            "conflicts": stats.conflicts,
            "pushes_received": stats.pushes,
            "push_gaps_seen": stats.gaps,
            "errors": len(stats.errors),
            "error_examples": sorted(set(stats.errors))[:10],
            "latency_ms": {
                "p50": round(percentile(stats.latencies, 0.50) * 1000, 1),
                "p90": round(percentile(stats.latencies, 0.90) * 1000, 1),
                "p99": round(percentile(stats.latencies, 0.99) * 1000, 1),
                "max": round(max(stats.latencies, default=float("nan")) * 1000, 1),
                "mean": round(statistics.fmean(stats.latencies) * 1000, 1) if stats.latencies else None,
            },
            "rss_samples_kib": samples,
            "rss_after_warmup_kib": {"first": warm[0], "last": warm[-1], "min": min(warm), "max": max(warm)},
            "rss_growth_after_warmup_kib": warm[-1] - warm[0],
        }
    )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--session-size", type=int, default=10)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between one connection's patches")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of steady load")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS must be flat")
    parser.add_argument("--sample-every", type=float, default=10.0)
    parser.add_argument("--reply-timeout", type=float, default=30.0)
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file in a temporary folder")
    parser.add_argument(
        "--layer",
        choices=["redis", "memory"],
        default="redis",
        help="redis (default): a private redis-server on a free port, as in production; memory: Channels' "
        "in-memory layer, whose every receive and group_send scans all channels and groups (O(connections))",
    )
    parser.add_argument("--redis-url", default="", help="use this Redis instead of starting a private one")
    parser.add_argument("--no-pin", action="store_true", help="do not pin daphne to CPU 0 and this client to CPU 1")
    parser.add_argument("--output", default="", help="also write the report as JSON here")
    args = parser.parse_args()
    if args.connections < args.session_size or args.duration <= 0:
        parser.error("need at least one session and a positive duration")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.connections * 2 + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    workdir = Path(tempfile.mkdtemp(prefix="load-"))
    database_url = args.database_url or f"sqlite:///{workdir / 'load.sqlite3'}"
    redis = None
    if args.layer == "redis" and not args.redis_url:
        redis = start_redis(workdir)
        args.redis_url = f"redis://127.0.0.1:{redis[1]}/0"
    env = server_env(args, database_url, secrets.token_hex(32))
    print(f"preparing {database_url} ...", flush=True)
    prepare(env, args.session_size)
    server = Daphne(env, workdir / "daphne.log", pin)
    if pin:
        os.sched_setaffinity(0, {1})
    try:
        tokens = [obtain_token(server.port, f"load{i:03d}") for i in range(args.session_size)]
        print(f"daphne pid {server.pid} on port {server.port}; {args.connections} connections ...", flush=True)
        report = asyncio.run(run(args, server, tokens))
    finally:
        server.stop()
        if redis is not None:
            redis[0].terminate()
            redis[0].wait(timeout=10)
    log = (workdir / "daphne.log").read_text(errors="replace")
    report["server_log_tracebacks"] = log.count("Traceback")
    report["settings"] = {k: v for k, v in vars(args).items()}
    report["pinned"] = pin
    shutil.rmtree(workdir, ignore_errors=True)

    summary = {k: v for k, v in report.items() if k != "rss_samples_kib"}
    print(json.dumps(summary, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))
    ok = report["errors"] == 0 and report["sessions_with_lost_or_extra_patches"] == 0
    print("zero errors: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
