"""Push delivery under connection churn, on two daphne processes: ``bench/load.py churn``.

The scenario of the delivery issue (item 4): while ``--members`` members of ``--sessions``
sessions patch in a loop, ``--unauth`` sockets connect and never authenticate (the server closes
them with 4408 after ``SESSIONS_AUTH_TIMEOUT``; they reconnect at once) and ``--garbage`` sockets
authenticate and send garbage frames in a loop (binary, invalid JSON, non-object JSON, nesting
past the limit, unknown states, a patch outside a session, an empty frame, and last an oversized
frame that closes them with 4413; they reconnect). Each channel layer of ``--layers`` gets a
fresh pair of daphne processes, a fresh private redis-server (channels_redis' core layer) and a
fresh PostgreSQL database, one layer after the other in the same invocation; the table puts them
side by side.

Measured, per layer, over ``--duration`` seconds after ``--warmup`` seconds of churn alone:

- for every acknowledged patch and every other member of its session, the delay from the
  acknowledgement's arrival at the sender to the ``patched`` push's arrival at that member (one
  client clock; a push that came first counts 0): p50 / p99 / max;
- pushes not delivered, in two kinds: *dropped* — the member already had a later version (its own
  patch's reply, or a later push) when the push would have been written, so the server dropped it
  as stale by design (``session_push``): under load this is what a late push becomes; *missing* —
  never delivered although the member never got past that version (within ``--grace`` seconds of
  the end);
- the Redis backlog, sampled every second: the sum (and the largest) of ZCARD over the process
  channels' keys: ``asgifanout-process.*`` (our layer), ``asgispecific.*`` (the stock layer,
  whose every consumer channel of a process shares its key; channels_redis writes no ":" there);
- the servers' ERROR / CRITICAL lines and tracebacks, quoted;
- what the churn achieved (connections/s, garbage frames/s, close codes, how late the 4408 came)
  and the patch replies' latency, conflicts, and that every session's final version equals its
  acknowledged patches.

Pinning (when there are two CPUs): both daphne processes on CPU 0, the client on CPU 1 (Redis and
PostgreSQL unpinned), as in the fan-out benchmark. The churn runs in a second client process
(bench/churn_worker.py, at nice +5) so that the measuring event loop (bench/churn_members.py) only
reads the members' frames; its own lag is reported (``client loop lag``). The servers, Redis and
the database come from the tests' launcher (tests/live.py); the report from bench/churn_report.py.
Loopback only; every phase is bounded in time.

    .venv/bin/python bench/load.py churn                          # both layers, 60 s each
    .venv/bin/python bench/load.py churn --layers 1 --duration 20  # our layer only, a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from churn_members import measure
from churn_report import print_details, scan_log, table
from churn_worker import run_loop
from fixtures import access_token, live

LAYERS = {
    "1": ("ours", "sessions_app.layers.FanoutChannelLayer", "asgifanout-process.*"),
    "0": ("stock", "channels_redis.core.RedisChannelLayer", "asgispecific.*"),
}
# channels_redis' core layer keys a channel's messages as its prefix ("asgi", no separator) + the
# channel name up to its "!": one sorted set per process (``asgifanout-process.<id>!``, our
# layer's process channel; ``asgispecific.<id>!``, shared by every consumer channel of a process
# on the stock layer). Group keys are ``asgi:group:<name>``.
# -v 2 hands Twisted's (and autobahn's) log to Python logging, where the project's LOGGING keeps
# WARNING and above: at -v 0 or 1 daphne discards it, and with it any error raised inside Twisted.
# No access log (one line per connection).
DAPHNE_OPTIONS = ("-v", "2", "--access-log", os.devnull)


def server_settings(args: argparse.Namespace, fanout: str) -> dict[str, Any]:
    """The servers' settings besides tests/live.py's production-like ones (DEBUG off): the Redis
    core layer, with or without our fan-out; the protocol's limits at their defaults (each socket
    is its own user), only the token lifetime and, with ``--auth-timeout``, the auth deadline set."""
    return {
        "CHANNEL_LAYER_BACKEND": "channels_redis.core.RedisChannelLayer",
        "CHANNEL_LAYER_FANOUT": fanout,
        "LOG_LEVEL": "WARNING",
        "JWT_ACCESS_LIFETIME": int(args.warmup + args.duration + 3600),
        "SESSIONS_AUTH_TIMEOUT": args.auth_timeout,
    }


def run_layer(args: argparse.Namespace, fanout: str, workdir: Path, pin: bool) -> dict[str, Any]:
    """One layer: fresh servers, Redis and database; the measurement; the servers' logs."""
    name, backend, pattern = LAYERS[fanout]
    folder = workdir / f"layer-{name}"
    folder.mkdir()
    names = [f"load{i:03d}" for i in range(args.members + args.garbage)]
    if pin:  # redis-server and the management commands unpinned; this client on CPU 1 once the servers run
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    with live.processes(folder) as started:
        database_url = args.database_url or started.postgres()[1]
        redis_url = args.redis_url or started.redis().url
        print(f"[{name} layer: CHANNEL_LAYER_FANOUT={fanout}, {backend}] preparing {database_url} ...", flush=True)
        ids = live.prepare_database(database_url, names)
        lifetime = int(args.warmup + args.duration + 3600)
        tokens = [access_token(live.SECRET_KEY, ids[username], lifetime) for username in names]
        servers = [
            started.daphne(
                database_url,
                redis_url,
                args=DAPHNE_OPTIONS,
                cpu=args.server_cpus if pin else None,
                stop_timeout=20,
                **server_settings(args, fanout),
            )
            for _ in range(args.processes)
        ]
        if pin:
            os.sched_setaffinity(0, {1})  # the churn worker inherits it
        print(f"  daphne pids {[s.pid for s in servers]} on ports {[s.port for s in servers]}", flush=True)
        try:
            report = run_loop(
                asyncio.wait_for(
                    measure(args, servers, tokens, redis_url, pattern, folder),
                    args.warmup + args.duration + args.grace + 300,
                )
            )
        finally:
            # Each log's size when its server is sent SIGTERM: what follows is written at the stop.
            stopped_at = [server.log_path.stat().st_size for server in servers]
    logs = {f"daphne-{i}": scan_log(server.log_path, stopped_at[i]) for i, server in enumerate(servers)}
    report["layer"] = {"name": name, "CHANNEL_LAYER_FANOUT": fanout, "backend": backend}
    report["server_logs"] = logs
    if args.keep_logs:
        target = Path(args.keep_logs) / f"layer-{name}"
        target.mkdir(parents=True, exist_ok=True)
        for i, server in enumerate(servers):
            shutil.copy(server.log_path, target / f"daphne-{i}.log")
    return report


# --- the command line ---------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/load.py churn", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--layers", default="1,0", help="CHANNEL_LAYER_FANOUT values, run in this order (1: ours, 0: stock)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the measured window, per layer")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of churn before the members patch")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds after the window for the last pushes")
    parser.add_argument("--unauth", type=int, default=500, help="sockets that never authenticate")
    parser.add_argument("--garbage", type=int, default=200, help="authenticated sockets sending garbage")
    parser.add_argument("--members", type=int, default=40, help="patching members, in --sessions sessions")
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--patch-interval", type=float, default=1.0, help="seconds between a member's patches")
    parser.add_argument("--garbage-interval", type=float, default=0.2, help="seconds between a garbage socket's frames")
    parser.add_argument(
        "--auth-timeout", type=float, default=10.0, help="SESSIONS_AUTH_TIMEOUT for the run (default's)"
    )
    parser.add_argument("--processes", type=int, default=2, help="daphne processes")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of the daphne processes")
    parser.add_argument("--reply-timeout", type=float, default=30.0)
    parser.add_argument("--database-url", default="", help="default: a throwaway PostgreSQL database per layer")
    parser.add_argument("--redis-url", default="", help="default: a private redis-server per layer")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the servers and the client")
    parser.add_argument("--keep-logs", default="", help="copy the servers' logs into this folder")
    parser.add_argument("--output", default="", help="also write the full report as JSON here")
    args = parser.parse_args(argv)
    if args.members < 2 * args.sessions or args.duration <= 0 or args.processes < 1:
        parser.error("need two members per session, a positive duration and a process")
    if any(layer not in LAYERS for layer in args.layers.split(",")):
        parser.error("--layers takes 1 and/or 0, comma-separated")
    if args.redis_url and len(args.layers.split(",")) > 1:
        print("note: --redis-url is shared by the layers: the backlog counts whatever else uses it", flush=True)
    return args


def raise_fd_limit(args: argparse.Namespace) -> dict[str, int]:
    """The descriptors needed: this process's members, the worker's sockets (and those closing),
    and each server's share of them plus its database and Redis connections; the servers and the
    worker inherit the limit. Raised to that, if it is lower, within the hard limit."""
    sockets = args.unauth + args.garbage + args.members
    wanted = 2 * sockets + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            raise SystemExit(f"need {wanted} file descriptors (ulimit -n); the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return {"wanted": wanted, "soft_before": soft, "soft": resource.getrlimit(resource.RLIMIT_NOFILE)[0], "hard": hard}


def main(argv: list[str]) -> int:
    args = parse(argv)
    fds = raise_fd_limit(args)
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    workdir = Path(tempfile.mkdtemp(prefix="churn-"))
    reports = []
    started = time.monotonic()
    try:
        for fanout in args.layers.split(","):
            reports.append(run_layer(args, fanout, workdir, pin))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print_details(reports)
    print(
        f"\nchurn: {args.unauth} unauthenticated + {args.garbage} garbage sockets, {args.members} members in "
        f"{args.sessions} sessions (a patch every {args.patch_interval:g} s each), {args.processes} daphne "
        f"processes, {args.duration:g} s per layer, pinned: {pin}, fds: {fds['soft']}; "
        f"{time.monotonic() - started:.0f} s in all\n"
    )
    print(table(reports))
    if args.output:
        Path(args.output).write_text(
            json.dumps({"settings": vars(args), "fds": fds, "pinned": pin, "layers": reports}, indent=1)
        )
    ok = all(not r["member_errors"] and not r["member_closes"] and not r["sessions_version_mismatch"] for r in reports)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
