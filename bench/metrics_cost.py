"""What the metrics add to one frame (sessions_app.metrics), in nanoseconds, on this machine.

    .venv/bin/python bench/metrics_cost.py

For the two modes of prometheus_client (in memory; multiprocess, PROMETHEUS_MULTIPROC_DIR), in a
child interpreter each (the mode is chosen at import): what a ping's frame costs as counted
(``clock()`` at arrival, ``answered`` at the reply: a tally, flushed every second), and what it
would cost with prometheus_client's own ``inc`` and ``observe`` per frame. Best of 5 runs of
200,000 frames. Compare with a ping's server CPU in bench/README.md (tens of microseconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 200_000

CHILD = """
import os, sys, timeit
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
import django
django.setup()
from sessions_app import handlers, metrics  # noqa: F401 - handlers registers "ping"

def tallied():
    metrics.answered("ping", metrics.clock())

frames, seconds = metrics.FRAMES.labels("ping"), metrics.REPLY_SECONDS.labels("ping")

def direct():
    started = metrics.clock()
    frames.inc()
    seconds.observe(metrics.clock() - started)

def nothing():
    pass

n = int(sys.argv[1])
best = {name: min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e9 for name, fn in
        (("call", nothing), ("tallied", tallied), ("direct", direct))}
metrics.flush()
print(f"{best['tallied'] - best['call']:.0f} {best['direct'] - best['call']:.0f}")
"""


def measure(env: dict[str, str]) -> tuple[int, int]:
    """``(tallied, direct)`` ns per frame in a child interpreter with ``env``."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(FRAMES)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    tallied, direct = result.stdout.split()
    return int(tallied), int(direct)


def main() -> None:
    base = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    base["DJANGO_DEBUG"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        for mode, env in (("in memory", base), ("multiprocess", {**base, "PROMETHEUS_MULTIPROC_DIR": directory})):
            tallied, direct = measure(env)
            print(f"{mode:>12}: {tallied:5d} ns per frame as counted; {direct:5d} ns with inc + observe per frame")


if __name__ == "__main__":
    main()
