"""Where a server's CPU goes under one workload: py-spy samples the server while the load generator
runs the job (issue 16: "the remaining cost measured with a profiler").

    python bench/profile.py connect ours-uvicorn [--seconds 20] [--db postgresql] [--doc-bytes N]
    python bench/profile.py patch ours-daphne --doc-bytes 1040000

Starts the server as bench/run.py does (pinned to CPU 0, same settings and data), runs the job for
`--seconds` and py-spy (`pip install py-spy`, pinned to CPU 1 with the load generator, sampling
without stopping the server: `--nonblocking`) over the same span. Writes the collapsed stacks to
bench/results/profile-<workload>-<server>.txt and prints the functions with the most samples,
by own time and by time including callees (a share of the server's samples, idle excluded).
"""

from __future__ import annotations

import argparse
import collections
import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import BENCH, LOADGEN_CPU, Bench, Params
from servers import SERVERS

RESULTS = BENCH / "results"


def summarise(collapsed: Path, top: int) -> str:
    """The `top` frames by own samples and by inclusive samples of py-spy's collapsed output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples"]
    for title, counter in (("own", own), ("inclusive", inclusive)):
        lines.append(f"\n-- by {title} samples --")
        for frame, n in counter.most_common(top):
            lines.append(f"{n / total:6.1%}  {frame}")
    return "\n".join(lines)


def main() -> None:
    """Profile one server under one workload's job; print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=("ping", "connect", "patch", "fanout"))
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--doc-bytes", type=int, default=0, help="patch: grow each document to this size first")
    parser.add_argument("--connections", type=int, default=50, help="fanout: the members")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before py-spy starts (skip a set-up)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    run_args = argparse.Namespace(env=[], servers=[args.server], variants=[])
    out = RESULTS / f"profile-{args.workload}-{args.server}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        bench = Bench(run_args, Params(), Path(tmp))
        try:
            db = bench.postgres() if args.db == "postgresql" else bench.sqlite
            if db is None:
                raise SystemExit("profile: PostgreSQL not reachable")
            tokens, usernames = bench.tokens(db)
            job = {"job": args.workload, "connections": args.connections, "tokens": tokens, "repeats": 1}
            job |= {"warmup": 1.0, "duration": args.seconds, "timeout": args.seconds + args.delay + 300}
            if args.workload == "fanout":  # one process, the in-memory layer: patches until py-spy is done
                samples = int((args.seconds + args.delay) / 0.05)
                job |= {"members": args.connections, "usernames": usernames, "samples": samples, "warmup_patches": 2}
            if args.doc_bytes:
                job["doc_bytes"] = args.doc_bytes
            with bench.side_by_side([SERVERS[args.server]], bench.env(db), db) as started:
                runs = started[args.server]
                result: dict = {}
                loader = threading.Thread(target=lambda: result.update(bench.loadgen(job, runs)))
                loader.start()
                time.sleep(args.delay)
                # py-spy starts with the measured window (after the warm-up and any document build
                # is not known here: with --doc-bytes, give --seconds enough to cover the build).
                spy = [
                    "taskset",
                    "-c",
                    LOADGEN_CPU,
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--nonblocking",
                    "--format",
                    "raw",
                ]
                spy += ["--rate", str(args.rate), "--duration", str(int(args.seconds)), "-o", str(out)]
                subprocess.run([*spy, "--pid", str(runs[0].pid)], check=True, capture_output=True)
                loader.join()
        finally:
            bench.close()
    print(summarise(out, args.top))
    for window in result.get("repeats", []):
        print(f"\nwindow: {window['count']} ops, {window['cpu_us_per_op']:.0f} µs CPU/op, {window['rate']:.0f}/s")
    print(f"\ncollapsed stacks: {out}")


if __name__ == "__main__":
    main()
