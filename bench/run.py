"""Benchmark harness of issue 6: our server against its peers, in one run, as ratios.

    python bench/run.py [--quick] [--workloads ping,connect,patch,fanout,memory] [--servers ...]

Each server runs pinned to CPU 0 (`taskset -c 0`), the load generator (bench/loadgen.py) on CPU 1.
Servers of one workload run side by side and the repeats are interleaved (server A, B, C, A, B, C
...), so a slow spell of this shared machine hits every server alike. Prints a table of medians with
ratios against the FastAPI peer and the plain Channels peer, checks the targets, and writes
bench/results/latest.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import plots
import report
import targets
from environment import describe
from harness import BENCH, LOADGEN_CPU, QUICK, Bench, Params
from scenarios import LAYERS, RUNNERS, WORKLOADS
from servers import SERVERS, ServerSpec

logger = logging.getLogger("bench")

RESULTS = BENCH / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short repeat of each, for smoke runs")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of each measurement (default: 3, quick 1)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: %(default)s")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated: %(default)s")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the servers (repeatable), e.g. to compare a setting on and off",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        dest="variants",
        metavar="SERVER+TAG:KEY=VALUE[,KEY=VALUE]",
        help="also run SERVER with extra environment, as its own row, e.g. to measure a setting on and off "
        "in the same run: --variant ours-daphne+noclose:SOME_SETTING=0 (repeatable)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/12",
        help="Redis for the fan-out (default %(default)s; a private redis-server is started when none answers)",
    )
    parser.add_argument(
        "--fanout-cpus",
        default="0,0",
        help="CPUs of the fan-out's two server processes (default %(default)s: both share the server CPU; "
        "0,1 gives each a core, the second shared with the load generator)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON (default %(default)s)")
    parser.add_argument(
        "--plots",
        type=Path,
        default=None,
        help="directory of the PNG scale curves (default: bench/plots on full runs, the committed ones; "
        "bench/results/plots with --quick)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.servers = [s for s in args.servers.split(",") if s]
    for name in args.workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}")
    for name in args.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}")
    args.fanout_cpus = tuple(c.strip() for c in args.fanout_cpus.split(","))
    if len(args.fanout_cpus) != 2 or not all(c.isdigit() for c in args.fanout_cpus):
        parser.error("--fanout-cpus takes two CPU numbers, e.g. 0,0 or 0,1")
    try:
        args.variants = [variant(text) for text in args.variants]
    except ValueError as exc:
        parser.error(str(exc))
    return args


def variant(text: str) -> ServerSpec:
    """Parse `SERVER+TAG:KEY=VALUE[,KEY=VALUE]` into a server spec with extra environment."""
    name, _, assignments = text.partition(":")
    base, _, tag = name.partition("+")
    if base not in SERVERS or not tag or "=" not in assignments:
        raise ValueError(f"--variant {text!r}: expected SERVER+TAG:KEY=VALUE, SERVER one of {', '.join(SERVERS)}")
    extra = dict(pair.split("=", 1) for pair in assignments.split(",") if "=" in pair)
    spec = SERVERS[base]
    return dataclasses.replace(spec, key=name, label=f"{spec.label} [{tag}]", env={**spec.env, **extra})


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads, print the table and the targets, write the JSON."""
    args = parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: the servers and the PostgreSQL database are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("bench: needs two CPUs (server on CPU 0, load generator on CPU 1)")
    os.sched_setaffinity(0, {int(LOADGEN_CPU)})  # keep the harness off the servers' CPU
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # servers inherit it: 5,000 sockets
    params = QUICK if args.quick else Params()
    if args.repeats:
        memory_repeats = min(args.repeats, params.memory_repeats)
        params = dataclasses.replace(params, repeats=args.repeats, memory_repeats=memory_repeats)
    load = os.getloadavg()[0]
    if load > 1.0:
        logger.warning("load average %.1f before the run: other work shares these CPUs", load)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench = Bench(args, params, Path(tmp))
        try:
            for workload in args.workloads:
                RUNNERS[workload](bench)
        finally:
            bench.close()
    report.add_ratios(bench.rows)
    wanted = report.targets(
        [f"{n} conns" for n in params.ping_connections if n <= 500],  # issue 6 names these two
        [f"{n} members, {layer}" for n in params.fanout_members for layer in LAYERS],
        [f"{n} idle" for n in params.memory_steps],
    )
    checked = report.evaluate(bench.rows, wanted)
    checked16 = report.evaluate(
        bench.rows,
        targets.issue16(
            [f"{n} members, {layer}" for n in params.fanout_members for layer in LAYERS],
            [f"{n} idle" for n in params.memory_steps],
        ),
    )
    elapsed = time.perf_counter() - started
    mode = "quick" if args.quick else "full"
    print(f"\n## Benchmark ({mode} run, {elapsed:.0f} s, medians of {params.repeats} repeats)\n")
    print(report.table(bench.rows))
    print("\nRatios compare the workload's primary figure: ping and patch CPU µs/op, connect rate,")
    print("fan-out p99, memory KiB/conn. x Channels: the Channels peer on the same ASGI server (fan-out:")
    print("and the same channels_redis layer); x Channels CPU: fan-out CPU µs per delivered push.\n")
    print("Targets (issue 6):")
    print(report.targets_text(checked))
    print("\nTargets (issue 16):")
    print(report.targets_text(checked16))
    for text in bench.notes:
        print(f"note: {text}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "meta": describe(args, elapsed),
        "params": asdict(params),
        "rows": bench.rows,
        "targets": checked,
        "targets_issue16": checked16,
        "notes": bench.notes,
    }
    results["meta"]["load_average_at_start"] = round(load, 2)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {args.output}")
    directory = args.plots or (RESULTS.parent / "plots" if args.quick else plots.PLOTS)
    try:
        written = plots.write(bench.rows, directory, title=f"git {results['meta']['git']}, {mode} run")
    except ImportError:
        print("plots: matplotlib is not installed (pip install -r bench/requirements.txt)")
    else:
        for path in written:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
