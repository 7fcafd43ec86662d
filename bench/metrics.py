"""Process CPU time and memory from /proc, and the percentile helpers the reports use.

CPU time is utime + stime of `/proc/<pid>/stat` (fields 14 and 15, in clock ticks), which covers
every thread of the process; it is summed over the server's pid and its live descendants (uvicorn
with workers or a reloader would have some; daphne and a plain uvicorn have none).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    """Return the fields of /proc/<pid>/stat after the command name, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(roots: Iterable[int]) -> list[int]:
    """Return the `roots` and all their live descendants (scan once, then sample the list)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], list(roots)
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """Return user + system CPU seconds used so far by the processes `pids` (all threads)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # After the name: state=0 ppid=1 ... utime=11 stime=12 (fields 14, 15 of stat(5)).
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def rss_bytes(pids: Iterable[int]) -> int:
    """Return the resident set size in bytes of the processes `pids`."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_SIZE
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def self_cpu_seconds() -> float:
    """Return user + system CPU seconds used so far by this process."""
    times = os.times()
    return times.user + times.system


def percentile(values: Sequence[float], pct: float) -> float:
    """Return the `pct` percentile of `values` (nearest rank), or NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    """Return the median of the finite `values`, or NaN when there are none."""
    finite = sorted(v for v in values if v is not None and not math.isnan(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
