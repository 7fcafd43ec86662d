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

``bench/load.py churn [options]`` runs the connection-churn scenario instead (bench/churn.py: two
daphne processes on Redis and PostgreSQL, sockets that never authenticate and sockets that send
garbage, while members patch; push delays, drops, Redis backlog and server ERROR lines, for
``CHANNEL_LAYER_FANOUT=1`` and ``=0`` side by side); ``bench/load.py churn --help`` lists its options.
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
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fixtures import live
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

# --- the server ------------------------------------------------------------------------------------


def server_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The server's settings for the run (environment variables): raised limits, quiet logs."""
    return {
        "LOG_LEVEL": "WARNING",
        # Raised for the run: one user holds a connection in every session of its column.
        "SESSIONS_MAX_CONNECTIONS_PER_USER": args.connections + 10,
        "SESSIONS_MAX_SESSIONS_PER_USER": args.connections + 10,
        "SESSIONS_RATE_LIMIT": 1000,
        "SESSIONS_RATE_BURST": 1000,
        "JWT_ACCESS_LIFETIME": int(args.duration + 3600),
    }


# --- the clients --------------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    acked: int = 0
    conflicts: int = 0
    rebased: int = 0  # acknowledged patches the server rebased on changes since their version
    errors: list[str] = field(default_factory=list)
    pushes: int = 0
    gaps: int = 0

    def error(self, text: str) -> None:
        if len(self.errors) < 10_000:
            self.errors.append(text)


async def open_ws(url: str, timeout: float) -> Any:
    """A WebSocket to ``url`` as a browser opens it (Origin), no compression, no pings."""
    origin = "http://" + url.split("//", 1)[1].split("/", 1)[0]
    return await connect(
        url, origin=origin, compression=None, open_timeout=timeout, ping_interval=None, max_queue=None, close_timeout=5
    )


def close_code(exc: ConnectionClosed) -> int:
    return exc.rcvd.code if exc.rcvd is not None else 1006


class Conn:
    """One authenticated connection of a benchmark: a reader task stamps every frame on arrival,
    routes replies to their requests by id and hands the rest to ``on_push``.

    Not tests/wsclient.py's ``Client``, on purpose: thousands of these share one event loop, and
    every push must be read (and stamped) as it arrives, while the tests' client reads only when
    it waits for something; this one also skips its checks and decodes with orjson."""

    _ids = itertools.count(1)

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.version = 0  # the session version to patch on
        self.waiting: dict[str, asyncio.Future[tuple[float, dict[str, Any]]]] = {}
        self.closed: int | None = None
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, token: str, *args: Any, timeout: float = 30) -> Any:
        """Connect to ``url`` and authenticate with ``token``; ``args`` go to the constructor."""
        ws = await open_ws(url, timeout)
        await ws.send(orjson.dumps({"token": token}).decode())
        first = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        if first.get("state") != "initialised":
            await ws.close()
            raise RuntimeError(f"handshake failed: {first}")
        return cls(ws, *args)

    def on_push(self, frame: dict[str, Any], stamp: float) -> None:
        """Called with every frame that is not a reply, and its arrival (``time.perf_counter()``)."""

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                stamp = time.perf_counter()
                frame = orjson.loads(raw)
                future = self.waiting.pop(frame.get("id"), None) if "id" in frame else None
                if future is not None:
                    if not future.done():
                        future.set_result((stamp, frame))
                else:
                    self.on_push(frame, stamp)
        except ConnectionClosed as exc:
            self.closed = close_code(exc)
        finally:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"closed {self.closed}"))

    async def stamped(self, state: str, data: dict[str, Any], timeout: float) -> tuple[float, dict[str, Any]]:
        """Send a request; return its reply and the reply's arrival (``time.perf_counter()``)."""
        rid = f"q{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        await self.ws.send(orjson.dumps({"state": state, "data": data, "id": rid}).decode())
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.waiting.pop(rid, None)

    async def request(self, state: str, data: dict[str, Any], timeout: float) -> dict[str, Any]:
        return (await self.stamped(state, data, timeout))[1]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self.reader.cancel()


class LoadConn(Conn):
    """A connection of the sustained load: counts the ``patched`` pushes and the gaps between them."""

    def __init__(self, ws: Any, stats: Stats) -> None:
        super().__init__(ws)
        self.stats = stats

    def on_push(self, frame: dict[str, Any], stamp: float) -> None:
        if frame.get("state") == "patched":
            self.stats.pushes += 1
            version = frame["data"]["version"]
            if version > self.version + 1:
                self.stats.gaps += 1
            self.version = max(self.version, version)
        elif frame.get("state") == "error":
            self.stats.error(f"unsolicited error {frame.get('code')}")


@dataclass(frozen=True)
class Pace:
    """How a connection patches: every ``interval`` seconds (``catch_up``: a late patch is sent at
    once to keep the rate; otherwise the schedule slips); on ``conflict``, it rebases on the
    version the error names and retries, after a jittered pause growing from ``pause`` to
    ``max_pause``, at most ``attempts`` times."""

    interval: float
    reply_timeout: float
    attempts: int
    pause: float
    max_pause: float
    catch_up: bool


async def patches(conn: Conn, path: str, stop_at: float, pace: Pace) -> AsyncIterator[tuple[str, float, float, Any]]:
    """Replace ``path`` with 1, 2, 3 ... at ``pace`` until ``stop_at`` or the connection closes;
    yields ``(outcome, sent, arrived, reply)`` per request: ``ack``, ``conflict`` (retried) or
    ``error`` (the value is given up), with the reply and its arrival (``time.perf_counter()``);
    ``gave up`` after ``attempts`` conflicts; last, ``failed`` with the exception when a request got
    no reply. ``conn.version`` follows the replies."""
    await asyncio.sleep(random.uniform(0, pace.interval))  # spread the connections over the interval
    next_at = time.monotonic()
    value = 0
    while time.monotonic() < stop_at and conn.closed is None:
        value += 1
        for attempt in range(pace.attempts):
            request = {"version": conn.version, "ops": [{"op": "replace", "path": path, "value": value}]}
            sent = time.perf_counter()
            try:
                arrived, reply = await conn.stamped("patch", request, pace.reply_timeout)
            except (TimeoutError, ConnectionError, ConnectionClosed) as exc:
                yield "failed", sent, time.perf_counter(), exc
                return
            if reply.get("state") == "patch":
                conn.version = max(conn.version, reply["data"]["version"])
                yield "ack", sent, arrived, reply
                break
            if reply.get("code") != "conflict":
                yield "error", sent, arrived, reply
                break
            conn.version = max(conn.version, reply["data"]["version"])
            yield "conflict", sent, arrived, reply
            # Rebase on the current version after a jittered, growing pause, as the browser
            # client does: retrying at once makes every member of a busy session collide again.
            await asyncio.sleep(random.uniform(0, min(pace.max_pause, pace.pause * 2**attempt)))
        else:
            yield "gave up", 0.0, 0.0, None
        next_at = next_at + pace.interval if pace.catch_up else max(next_at + pace.interval, time.monotonic())
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def patcher(
    conn: LoadConn, key: str, args: argparse.Namespace, stop_at: float, acked: dict[str, int], sid: str
) -> None:
    """Patch ``/k/<key>`` every ``interval`` seconds until ``stop_at``, counting into the stats."""
    stats = conn.stats
    pace = Pace(args.interval, args.reply_timeout, attempts=20, pause=0.02, max_pause=1.0, catch_up=True)
    async for outcome, sent, arrived, reply in patches(conn, f"/k/{key}", stop_at, pace):
        if outcome == "failed":
            stats.error(f"patch: {type(reply).__name__} {reply}")
        elif outcome == "gave up":
            stats.error(f"patch: {pace.attempts} conflicts in a row")
        else:
            stats.latencies.append(arrived - sent)
            if outcome == "ack":
                stats.acked += 1
                stats.rebased += bool(reply["data"].get("rebased"))
                acked[sid] += 1
            elif outcome == "conflict":
                stats.conflicts += 1
            else:
                stats.error(f"patch error {reply.get('code')}: {reply.get('error')}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace, server: live.Server, tokens: list[str]) -> dict[str, Any]:
    stats = Stats()
    size = args.session_size
    sessions = args.connections // size
    report: dict[str, Any] = {"connections": sessions * size, "sessions": sessions, "session_size": size}
    rss_idle = server.rss_kib()
    report["rss_idle_kib"] = rss_idle

    # Connect everyone (in batches), then each session's first member creates it and invites the rest.
    started = time.monotonic()
    conns: list[LoadConn] = []
    semaphore = asyncio.Semaphore(args.connect_concurrency)

    async def one(index: int) -> LoadConn:
        async with semaphore:
            return await LoadConn.open(server.socket_url, tokens[index % size], stats)

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
            "conflicts_per_acked_patch": round(stats.conflicts / max(stats.acked, 1), 3),
            "rebased": stats.rebased,
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
    if sys.argv[1:2] == ["churn"]:
        # The churn scenario (bench/churn.py): two daphne processes, connection churn, push delays.
        from churn import main as churn_main

        return churn_main(sys.argv[2:])
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
    names = [f"load{i:03d}" for i in range(args.session_size)]
    # The launcher of the tests (tests/live.py) starts and always stops the servers.
    with live.processes(workdir) as started:
        if args.layer == "redis" and not args.redis_url:
            args.redis_url = started.redis().url
        print(f"preparing {database_url} ...", flush=True)
        live.prepare_database(database_url, names)
        server = started.daphne(database_url, args.redis_url or None, cpu="0" if pin else None, **server_settings(args))
        if pin:
            os.sched_setaffinity(0, {1})
        tokens = [server.token(name) for name in names]
        print(f"daphne pid {server.pid} on port {server.port}; {args.connections} connections ...", flush=True)
        report = asyncio.run(run(args, server, tokens))
    report["server_log_tracebacks"] = server.log().count("Traceback")
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
