"""The measuring side of ``bench/load.py churn`` (bench/churn.py): the members that patch, the
ledger of their patches, the Redis backlog, and the delays of the pushes.

Every acknowledged patch is recorded with the arrival of its reply at the sender; every member
stamps each ``patched`` push of its session on arrival. One client clock measures both ends, so
a delay is the push's arrival at a member minus the acknowledgement's arrival at the sender (a
push that came first counts 0). The churn itself runs in another process (bench/churn_worker.py),
so that this event loop only reads the members' frames.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import load  # bench/load.py: the benchmark's connections
from churn_worker import percentiles, sample_lag
from fixtures import ROOT, live

BENCH = Path(__file__).resolve().parent
DEFAULT_MAX_MESSAGE_BYTES = 65536  # SESSIONS_MAX_MESSAGE_BYTES' default (sessions_app/conf.py)


class Member(load.Conn):
    """One patching member (bench/load.py's connection): records the ``patched`` pushes of its
    session by version, stamped on arrival."""

    def __init__(self, ws: Any, index: int) -> None:
        self.index = index
        self.session = -1  # index of its session
        self.session_id = ""
        self.top = 0  # the latest version the server wrote to this member (push or own reply)
        self.arrivals: dict[int, float] = {}  # version -> arrival of its push
        self.seen: list[tuple[int, float]] = []  # (version, arrival) of every push and own reply
        self.duplicates = 0
        self.unsolicited: Counter[str] = Counter()
        super().__init__(ws)  # starts the reader; ``version`` follows pushes, own replies, conflicts

    def on_push(self, frame: dict[str, Any], stamp: float) -> None:
        state = frame.get("state")
        if state == "patched":
            data = frame["data"]
            if data["session"] != self.session_id:
                return
            version = data["version"]
            if version in self.arrivals:
                self.duplicates += 1
                return
            self.arrivals[version] = stamp
            self.seen.append((version, stamp))
            self.top = max(self.top, version)
            self.version = max(self.version, version)
        elif state == "error":
            self.unsolicited[str(frame.get("code"))] += 1

    async def ok(self, state: str, data: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        reply = await self.request(state, data, timeout)
        if reply.get("state") != state:
            raise RuntimeError(f"{state} failed: {reply}")
        return reply["data"]


@dataclass
class Ledger:
    acks: dict[tuple[int, int], tuple[float, int]] = field(default_factory=dict)  # (session, version) -> (t, sender)
    patch_latency: list[float] = field(default_factory=list)
    conflicts: int = 0
    gave_up: int = 0  # values given up after 50 conflicts in a row (the next value is tried)
    errors: Counter[str] = field(default_factory=Counter)


async def patcher(member: Member, args: argparse.Namespace, stop_at: float, ledger: Ledger) -> None:
    """Patch ``/k/<member>`` every ``patch_interval`` seconds until ``stop_at`` (bench/load.py's
    loop: on ``conflict``, rebase on the version it names after a short jittered pause, and retry),
    recording every acknowledgement in the ledger."""
    pace = load.Pace(args.patch_interval, args.reply_timeout, attempts=50, pause=0.005, max_pause=0.2, catch_up=False)
    async for outcome, sent, arrived, reply in load.patches(member, f"/k/{member.index}", stop_at, pace):
        if outcome == "failed":
            ledger.errors[f"patch {type(reply).__name__}"] += 1
        elif outcome == "gave up":
            ledger.gave_up += 1
        else:
            ledger.patch_latency.append(arrived - sent)
            if outcome == "ack":
                version = reply["data"]["version"]
                ledger.acks[(member.session, version)] = (arrived, member.index)
                member.seen.append((version, arrived))
                member.top = max(member.top, version)
            elif outcome == "conflict":
                ledger.conflicts += 1
            else:
                ledger.errors[f"patch error {reply.get('code')}"] += 1


async def sample_backlog(redis_url: str, pattern: str, t0: float, samples: list[dict[str, Any]]) -> None:
    """Every second: ZCARD of every key matching ``pattern`` (sum, largest, number of keys)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        while True:
            began = time.monotonic()
            try:
                keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
                sizes: list[int] = []
                if keys:
                    pipe = client.pipeline(transaction=False)
                    for key in keys:
                        pipe.zcard(key)
                    sizes = await pipe.execute()
                samples.append(
                    {"t": round(began - t0, 1), "total": sum(sizes), "max": max(sizes, default=0), "keys": len(keys)}
                )
            except Exception as exc:  # noqa: BLE001 - a missed sample is noted, the run goes on
                samples.append({"t": round(began - t0, 1), "error": repr(exc)})
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    finally:
        await client.aclose()


def deliveries(members: list[Member], ledger: Ledger) -> dict[str, Any]:
    """Delays of every (acknowledged patch, other member), and the pushes not delivered."""
    by_session: dict[int, list[Member]] = {}
    for member in members:
        by_session.setdefault(member.session, []).append(member)
    # For "had it already moved past version v": the earliest time a member saw any version > v.
    past: dict[int, tuple[list[int], list[float]]] = {}
    for member in members:
        seen = sorted(member.seen)
        versions = [v for v, _t in seen]
        earliest = [t for _v, t in seen]
        for i in range(len(earliest) - 2, -1, -1):
            earliest[i] = min(earliest[i], earliest[i + 1])
        past[member.index] = (versions, earliest)
    delays: list[float] = []
    before_ack = dropped = missing = 0
    dropped_ahead: list[float] = []
    for (session, version), (acked_at, sender) in ledger.acks.items():
        for member in by_session[session]:
            if member.index == sender:
                continue
            arrived = member.arrivals.get(version)
            if arrived is not None:
                if arrived < acked_at:
                    before_ack += 1
                delays.append(max(0.0, arrived - acked_at))
                continue
            versions, earliest = past[member.index]
            i = bisect.bisect_right(versions, version)
            if i < len(versions):
                dropped += 1
                dropped_ahead.append(max(0.0, earliest[i] - acked_at))
            else:
                missing += 1
    expected = len(delays) + dropped + missing
    # A dropped push had not come when its member moved past it: its delay was at least that long.
    bounded = percentiles(delays + dropped_ahead)
    return {
        "expected": expected,
        "delivered": len(delays),
        "delay_ms": percentiles(delays),
        "delivered_before_ack": before_ack,
        "over_1s": sum(1 for d in delays if d > 1.0),
        "dropped_stale": dropped,
        "dropped_member_ahead_ms": percentiles(dropped_ahead),
        "delay_incl_dropped_at_least_ms": bounded,
        "missing": missing,
        "duplicates": sum(m.duplicates for m in members),
    }


async def connect_members(
    args: argparse.Namespace, urls: list[str], tokens: list[str]
) -> tuple[list[Member], dict[int, int], list[str]]:
    """Connect the members and make the sessions; returns the members, each session's version
    after its set-up and the sessions' ids. Member i is in session i % sessions, on process
    (i // sessions) % processes: every session has members on every process, so its pushes cross
    between them. Each session's first member owns it and invites the others."""
    members: list[Member] = []
    initial: dict[int, int] = {}
    session_ids: list[str] = []
    try:
        for i in range(args.members):
            members.append(await Member.open(urls[(i // args.sessions) % len(urls)], tokens[i], i))
        for s in range(args.sessions):
            group = members[s :: args.sessions]
            owner = group[0]
            created = await owner.ok("create", {"title": f"churn {s}", "data": {"k": {}}})
            for member in group[1:]:
                await owner.ok("invite", {"username": f"load{member.index:03d}", "role": "editor"})
            keys = {str(m.index): 0 for m in group}
            owner.version = (
                await owner.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/k", "value": keys}]})
            )["version"]
            for member in group:
                member.session, member.session_id = s, created["id"]
                if member is not owner:
                    member.version = (await member.ok("join", {"session": created["id"]}))["version"]
            initial[s] = owner.version
            session_ids.append(created["id"])
    except BaseException:
        await asyncio.gather(*(m.close() for m in members))
        raise
    return members, initial, session_ids


async def start_worker(
    args: argparse.Namespace, urls: list[str], tokens: list[str], workdir: Path
) -> asyncio.subprocess.Process:
    """The churn, in its own process (bench/churn_worker.py), for warm-up + window + grace."""
    config = workdir / "churn-worker.json"
    settings = {
        "urls": urls,
        "tokens": tokens,
        "unauth": args.unauth,
        "auth_timeout": args.auth_timeout,
        "garbage_interval": args.garbage_interval,
        "max_message_bytes": DEFAULT_MAX_MESSAGE_BYTES,
        "run_for": args.warmup + args.duration + args.grace,
    }
    config.write_text(json.dumps(settings))
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / "churn_worker.py"),
        str(config),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def backlog(samples: list[dict[str, Any]], window_start: float, pattern: str) -> dict[str, Any]:
    """The Redis backlog over the window, from the samples of ``sample_backlog``."""
    window = [s for s in samples if "total" in s and s["t"] >= window_start]
    totals = [s["total"] for s in window]
    return {
        "pattern": pattern,
        "max": max(totals, default=None),
        "mean": round(statistics.fmean(totals), 1) if totals else None,
        "last": totals[-1] if totals else None,
        "largest_key": max((s["max"] for s in window), default=None),
        "sample_errors": sum(1 for s in samples if "error" in s),
        "samples_with_keys": sum(1 for s in window if s["keys"]),
    }


async def patch_window(args: argparse.Namespace, members: list[Member], ledger: Ledger, progress: Any) -> None:
    """The members patch for ``--duration`` seconds (then their last replies, bounded); calls
    ``progress()`` every 10 s."""
    stop_at = time.monotonic() + args.duration
    patchers = [asyncio.ensure_future(patcher(m, args, stop_at, ledger)) for m in members]
    deadline = stop_at + args.reply_timeout + 10
    pending: set[asyncio.Future[None]] = set(patchers)
    try:
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError("the members' last patches were not answered")
            _done, pending = await asyncio.wait(pending, timeout=min(10.0, max(0.1, deadline - time.monotonic())))
            if pending:
                progress()
        for task in patchers:
            task.result()
    finally:
        for task in pending:
            task.cancel()


async def measure(
    args: argparse.Namespace, servers: list[live.Server], tokens: list[str], redis_url: str, pattern: str, workdir: Path
) -> dict[str, Any]:
    urls = [server.socket_url for server in servers]
    ledger = Ledger()
    members, initial, session_ids = await connect_members(args, urls, tokens)
    tasks: list[asyncio.Future[Any]] = []
    worker = None
    report: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        worker = await start_worker(args, urls, tokens[args.members : args.members + args.garbage], workdir)
        worker_out = asyncio.ensure_future(worker.communicate())
        samples: list[dict[str, Any]] = []
        lags: list[float] = []
        tasks.append(asyncio.ensure_future(sample_backlog(redis_url, pattern, t0, samples)))
        print(f"  churn: {args.unauth} unauthenticated + {args.garbage} garbage sockets; warm-up {args.warmup:g} s")
        await asyncio.sleep(args.warmup)

        # The window: the members patch; pushes, replies and the backlog are recorded.
        window_start = time.monotonic() - t0
        tasks.append(asyncio.ensure_future(sample_lag(lags)))
        cpu_before = [server.cpu_seconds() for server in servers]

        def progress() -> None:
            last = next((s for s in reversed(samples) if "total" in s), {})
            print(
                f"  t={time.monotonic() - t0:5.1f}s acked={len(ledger.acks)} conflicts={ledger.conflicts} "
                f"backlog={last.get('total')} errors={sum(ledger.errors.values())}",
                flush=True,
            )

        await patch_window(args, members, ledger, progress)
        window = time.monotonic() - t0 - window_start
        cpu = [server.cpu_seconds() - before for server, before in zip(servers, cpu_before, strict=True)]
        tasks.pop().cancel()  # the lag of the window only

        # Grace: wait for the last pushes (churn still running), then count.
        grace_end = time.monotonic() + args.grace
        while time.monotonic() < grace_end:
            pending = sum(
                1
                for (s, v), (_t, sender) in ledger.acks.items()
                for m in members[s :: args.sessions]
                if m.index != sender and v not in m.arrivals and m.top <= v
            )
            if not pending:
                break
            await asyncio.sleep(0.1)
        report["delivery"] = deliveries(members, ledger)
        report["backlog"] = backlog(samples, window_start, pattern)
        report["backlog_samples"] = samples

        # Nothing acknowledged is lost: each session's version is its initial one plus its acks.
        finals = {}
        for s, sid in enumerate(session_ids):
            finals[s] = (await members[s].ok("join", {"session": sid, "since": 10**12}))["version"]
        acked = Counter(s for s, _v in ledger.acks)
        report["sessions_version_mismatch"] = [
            {"session": s, "final": finals[s], "expected": initial[s] + acked[s]}
            for s in finals
            if finals[s] != initial[s] + acked[s]
        ]
        report.update(
            {
                "window_s": round(window, 1),
                "acked": len(ledger.acks),
                "acked_per_s": round(len(ledger.acks) / window, 1),
                "conflicts": ledger.conflicts,
                "gave_up_after_50_conflicts": ledger.gave_up,
                "patch_reply_ms": percentiles(ledger.patch_latency),
                "member_errors": dict(ledger.errors),
                "member_closes": [m.closed for m in members if m.closed is not None],
                "member_unsolicited_errors": dict(sum((m.unsolicited for m in members), Counter())),
                "server_cpu_percent": [round(100 * c / window, 1) for c in cpu],
                "client_loop_lag_ms": percentiles(lags),
            }
        )
        stdout, stderr = await asyncio.wait_for(worker_out, args.warmup + args.duration + args.grace + 120)
        if worker.returncode:
            raise RuntimeError(f"churn worker failed ({worker.returncode}): {stderr.decode()[-3000:]}")
        report["churn"] = json.loads(stdout.decode().strip().splitlines()[-1])
    finally:
        for task in tasks:
            task.cancel()
        if worker is not None and worker.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.wait(), 10)
        await asyncio.gather(*(m.close() for m in members))
    return report
