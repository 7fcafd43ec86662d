"""Scale curves of one run as PNG pictures (issue 16 target 6): server CPU per operation against
connections (ping), members per session (fan-out) and document size (patch-size), one line per
server (and layer or database), from the run's rows (medians over the repeats).

    python bench/plots.py [bench/results/latest.json]   # again from a run's JSON

bench/run.py calls `write` at the end of every run; the pictures go to bench/plots/ (committed
from full runs, shown in the README's Performance section). Needs matplotlib (bench/requirements.txt).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from report import Row

PLOTS = Path(__file__).resolve().parent / "plots"
_SIZE = re.compile(r"^(\d+) (KiB|MiB), (\w+)$")


def _number(variant: str) -> int | None:
    """The leading count of a variant (`500 conns` -> 500), or None."""
    head = variant.split(" ", 1)[0]
    return int(head) if head.isdigit() else None


def _size(variant: str) -> tuple[int, str] | None:
    """`64 KiB, sqlite` -> (65536, "sqlite")."""
    match = _SIZE.match(variant)
    if not match:
        return None
    unit = 1024 if match[2] == "KiB" else 1048576
    return int(match[1]) * unit, match[3]


def series(rows: list[Row], workload: str) -> dict[str, list[tuple[float, float]]]:
    """The points (x, CPU µs per operation) of `workload`, by line label, sorted by x."""
    lines: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        cpu = (row.get("median") or {}).get("cpu_us_per_op")
        if row["workload"] != workload or cpu is None or cpu != cpu:
            continue
        variant = row["variant"]
        if workload == "patch-size":
            parsed = _size(variant)
            if parsed is None:
                continue
            x, extra = parsed
        else:
            x = _number(variant)
            extra = variant.rpartition(", ")[2] if ", " in variant else ""
        if x is None:
            continue
        label = f"{row['label']} [{extra}]" if extra else row["label"]
        lines.setdefault(label, []).append((x, cpu))
    return {label: sorted(points) for label, points in lines.items()}


FIGURES = (
    ("ping", "cpu-vs-connections.png", "ping: server CPU per request", "connections", "CPU µs per request"),
    ("fanout", "cpu-vs-members.png", "fan-out: server CPU per delivered push", "members", "CPU µs per push"),
    ("patch-size", "cpu-vs-document-size.png", "patch: server CPU per patch", "document (bytes)", "CPU µs per patch"),
)


def write(rows: list[Row], directory: Path = PLOTS, title: str = "") -> list[Path]:
    """Write the figures that `rows` have points for (two or more per line); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    directory.mkdir(parents=True, exist_ok=True)
    for workload, name, heading, xlabel, ylabel in FIGURES:
        lines = {label: points for label, points in series(rows, workload).items() if len(points) > 1}
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
        for label, points in sorted(lines.items()):
            xs, ys = zip(*points, strict=True)
            style = "-o" if label.startswith("ours") else "--s"
            ax.plot(xs, ys, style, label=label, markersize=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{heading}{' - ' + title if title else ''}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = directory / name
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results" / "latest.json"
    results = json.loads(source.read_text())
    meta = results.get("meta", {})
    for path in write(results["rows"], title=str(meta.get("git", ""))[:12]):
        print(f"wrote {path}")
