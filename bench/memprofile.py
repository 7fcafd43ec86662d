"""What one idle authenticated connection holds in a server process (issue 16 target 4): a
tracemalloc snapshot of the server before and after opening `--connections` idle authenticated
sockets, their difference grouped by the line that allocated, per connection.

    python bench/memprofile.py ours-daphne [--connections 1000] [--frames 12] [--top 30]
    python bench/memprofile.py ours-uvicorn --group traceback

The server runs as bench/run.py runs it (same settings and data), started through
`bench/memserve.py`, which turns tracemalloc on and writes a snapshot on SIGUSR1. tracemalloc sees
Python's allocations only (not the C libraries' own, e.g. uvloop's or OpenSSL's buffers) and slows
the server: use it to find what to cut, and the `memory` workload of bench/run.py (RSS) to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

from fixtures import PYTHON
from harness import Bench, Params
from servers import SERVERS

BENCH = Path(__file__).resolve().parent


def snapshot(pid: int, path: Path, timeout: float = 180.0) -> tracemalloc.Snapshot:
    """Ask the server for a snapshot (SIGUSR1) and load it once written."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.with_suffix(".done").exists():
            return tracemalloc.Snapshot.load(str(path))
        time.sleep(0.2)
    raise TimeoutError(f"no snapshot from {pid} in {timeout} s")


async def hold(urls: list[str], tokens: list[str], count: int, pid: int, snaps: Path) -> tuple:
    """Open `count` authenticated connections, take the snapshots around them, close them."""
    sys.path.insert(0, str(BENCH))
    from loadgen import Client, close_all, open_many, wait_idle

    warm = await open_many(lambda i: urls[0], lambda i: tokens[i % len(tokens)], 50)
    await asyncio.gather(*(c.request("ping") for c in warm))
    await close_all(warm)
    await wait_idle([pid])
    await asyncio.sleep(1.0)
    before = snapshot(pid, snaps / "before.pickle")
    clients: list[Client] = await open_many(lambda i: urls[0], lambda i: tokens[i % len(tokens)], count)
    await wait_idle([pid])
    await asyncio.sleep(1.0)
    after = snapshot(pid, snaps / "after.pickle")
    await close_all(clients)
    return before, after


def main() -> None:
    """Profile the memory of idle connections on one server; print the biggest holders."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=12, help="traceback depth tracemalloc keeps")
    parser.add_argument("--group", choices=("lineno", "traceback", "filename"), default="lineno")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    run_args = argparse.Namespace(env=[], servers=[args.server], variants=[])
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        work = Path(tmp)
        bench = Bench(run_args, Params(), work)
        spec = SERVERS[args.server]
        # the same command under bench/memserve.py: `python -m daphne ...` -> memserve.py daphne ...
        module = spec.argv[2] if spec.argv[1] == "-m" else None
        if module is None:
            raise SystemExit(f"memprofile: {args.server} is not run as `python -m SERVER`")
        argv = (PYTHON, str(BENCH / "memserve.py"), module, *spec.argv[3:])
        env = bench.env(MEMSERVE_DIR=str(work), MEMSERVE_FRAMES=str(args.frames))
        traced = replace(spec, argv=argv)
        try:
            with bench.side_by_side([traced], env, bench.sqlite) as started:
                run = started[args.server][0]
                tokens, _ = bench.tokens(bench.sqlite)
                before, after = asyncio.run(hold([run.socket_url], tokens, args.connections, run.pid, work))
        finally:
            bench.close()
    stats = after.compare_to(before, args.group)
    total = sum(s.size_diff for s in stats)
    print(f"{args.server}: {total / 1024 / args.connections:.2f} KiB per connection traced by Python")
    for stat in stats[: args.top]:
        per = stat.size_diff / args.connections
        blocks = stat.count_diff / args.connections
        where = stat.traceback.format()[-1].strip() if args.group != "traceback" else ""
        print(f"{per:8.0f} B {blocks:5.1f} blocks  {where or ''}")
        if args.group == "traceback":
            for line in stat.traceback.format()[-2 * args.frames :]:
                print(f"        {line}")


if __name__ == "__main__":
    main()
