"""Run an ASGI server (`python bench/memserve.py daphne ARGS...` = `python -m daphne ARGS...`)
for bench/memprofile.py: the first SIGUSR1 starts tracemalloc (tracing from the start would slow
Django's imports past the harness's start timeout) and writes the (empty) `before` snapshot, the
second the `after` one, to `$MEMSERVE_DIR/<name>.pickle`, each followed by a `<name>.done` file.
What `after` holds is what was allocated since the first signal and is still alive.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path

NAMES = ("before", "after")


def main() -> None:
    """Start tracing, install the SIGUSR1 handler, run the server module as `python -m` would."""
    frames = int(os.environ.get("MEMSERVE_FRAMES", "12"))
    directory = Path(os.environ["MEMSERVE_DIR"])
    taken = [0]

    def dump(*_: object) -> None:
        name = NAMES[min(taken[0], len(NAMES) - 1)]
        taken[0] += 1
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
        path = directory / f"{name}.pickle"
        tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).dump(str(path))
        path.with_suffix(".done").touch()

    signal.signal(signal.SIGUSR1, dump)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    sys.path.insert(0, os.getcwd())
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
