"""The results table, the ratios against the peers, and the issue's targets (issue 6)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from metrics import median

Row = dict[str, Any]

# The figure each workload's ratios compare, and whether lower is better.
PRIMARY: dict[str, tuple[str, bool]] = {
    "ping": ("cpu_us_per_op", True),
    "connect": ("rate", False),
    "patch": ("cpu_us_per_op", True),
    "patch-size": ("cpu_us_per_op", True),
    "fanout": ("p99_ms", True),
    "memory": ("kib_per_conn", True),
}
# A second figure compared with the Channels peer, where the primary one is not CPU per operation:
# the fan-out's CPU µs per delivered push (issue 10).
SECONDARY: dict[str, str] = {"fanout": "cpu_us_per_op"}
COLUMNS = [
    ("rate", "rate/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("cpu_us_per_op", "CPU µs/op", "{:,.0f}"),
    ("server_cpu_util", "srv CPU", "{:.0%}"),
    ("client_cpu_util", "gen CPU", "{:.0%}"),
    ("kib_per_conn", "KiB/conn", "{:.1f}"),
]


def summarise_repeats(repeats: list[dict]) -> dict[str, float]:
    """Median of each numeric figure over the repeats."""
    keys = {k for r in repeats for k, v in r.items() if isinstance(v, int | float)}
    return {k: median(r.get(k, math.nan) for r in repeats) for k in sorted(keys)}


def find(rows: list[Row], workload: str, variant: str, server: str) -> Row | None:
    """The row of (workload, variant, server) that has figures, or None."""
    for row in rows:
        if (row["workload"], row["variant"], row["server"]) == (workload, variant, server):
            return row if row.get("median") else None
    return None


def channels_baseline(server: str) -> str:
    """The plain Channels peer on the same ASGI server as `server` (uvicorn or daphne)."""
    return "channels-uvicorn" if server.split("+")[0].endswith("uvicorn") else "channels"


def ratio(rows: list[Row], row: Row, peer: str, key: str | None = None) -> float | None:
    """`row`'s figure `key` (default: the workload's primary one) divided by `peer`'s, same
    workload and variant."""
    if row["workload"] not in PRIMARY:
        return None
    key = key or PRIMARY[row["workload"]][0]
    other = find(rows, row["workload"], row["variant"], peer)
    if other is None or not row.get("median") or other["server"] == row["server"]:
        return None
    mine, theirs = row["median"].get(key), other["median"].get(key)
    if mine is None or not theirs or math.isnan(mine) or math.isnan(theirs):
        return None
    return mine / theirs


def add_ratios(rows: list[Row]) -> None:
    """Fill `vs_fastapi`, `vs_channels` and (fan-out) `vs_channels_cpu` of every row."""
    for row in rows:
        row["vs_fastapi"] = ratio(rows, row, "fastapi")
        peer = channels_baseline(row["server"])
        if find(rows, row["workload"], row["variant"], peer) is None:
            peer = "channels"
        row["vs_channels"] = ratio(rows, row, peer)
        second = SECONDARY.get(row["workload"])
        row["vs_channels_cpu"] = ratio(rows, row, peer, second) if second else None


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def table(rows: list[Row]) -> str:
    """The results as a Markdown table: medians over repeats, ratios on the primary figure."""
    head = ["workload", "variant", "server", *(c[1] for c in COLUMNS), "x FastAPI", "x Channels", "x Channels CPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        figures = row.get("median") or {}
        cells = [row["workload"], row["variant"], row["label"]]
        if row.get("error"):
            cells += ["error: " + row["error"].splitlines()[0][:120]] + [""] * (len(head) - 4)
        else:
            cells += [_cell(figures.get(key), fmt) for key, _, fmt in COLUMNS]
            ratios = (row.get("vs_fastapi"), row.get("vs_channels"), row.get("vs_channels_cpu"))
            cells += [_cell(value, "{:.2f}x") for value in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """One target of issue 6: `measure` returns the figure (None when not measured)."""

    name: str
    limit: float
    higher_is_better: bool
    unit: str
    measure: Callable[[list[Row]], float | None]


def _ratio_of(workload: str, variant: str, server: str, peer: str) -> Callable:
    def measure(rows: list[Row]) -> float | None:
        row = find(rows, workload, variant, server)
        return ratio(rows, row, peer) if row else None

    return measure


def _figure(workload: str, variant: str, server: str, key: str) -> Callable:
    def measure(rows: list[Row]) -> float | None:
        row = find(rows, workload, variant, server)
        return row["median"].get(key) if row else None

    return measure


def targets(ping_variants: list[str], fanout_variants: list[str], memory_variants: list[str]) -> list[Target]:
    """The targets of issue 6, for the variants this run measured."""
    found = []
    for v in ping_variants:
        found += [
            Target(
                f"ping CPU/req {v}: ours (uvicorn) vs FastAPI",
                1.2,
                False,
                "x",
                _ratio_of("ping", v, "ours-uvicorn", "fastapi"),
            ),
            Target(
                f"ping CPU/req {v}: ours (daphne) vs FastAPI",
                2.5,
                False,
                "x",
                _ratio_of("ping", v, "ours-daphne", "fastapi"),
            ),
            Target(
                f"ping CPU/req {v}: ours (daphne) vs Channels peer (daphne)",
                0.5,
                False,
                "x",
                _ratio_of("ping", v, "ours-daphne", "channels"),
            ),
            Target(
                f"ping CPU/req {v}: ours (uvicorn) vs Channels peer (uvicorn)",
                0.5,
                False,
                "x",
                _ratio_of("ping", v, "ours-uvicorn", "channels-uvicorn"),
            ),
        ]
    for v in fanout_variants:
        if v.startswith("1000 "):
            found.append(Target(f"fan-out p99 {v}", 50.0, False, "ms", _figure("fanout", v, "ours-daphne", "p99_ms")))
    for v in memory_variants:
        found.append(
            Target(
                f"memory per idle conn {v}, ours (daphne)",
                24.0,
                False,
                "KiB",
                _figure("memory", v, "ours-daphne", "kib_per_conn"),
            )
        )
    found.append(
        Target(
            "connect+auth, 50 at a time, ours (daphne)",
            500.0,
            True,
            "/s",
            _figure("connect", "50 concurrent", "ours-daphne", "rate"),
        )
    )
    return found


def evaluate(rows: list[Row], wanted: list[Target]) -> list[dict]:
    """Each target with its measured figure and whether it is met (None: not measured)."""
    results = []
    for target in wanted:
        value = target.measure(rows)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            met = None
        elif target.higher_is_better:
            met = value >= target.limit
        else:
            met = value <= target.limit
        results.append(
            {
                "target": target.name,
                "limit": target.limit,
                "unit": target.unit,
                "higher_is_better": target.higher_is_better,
                "value": value,
                "met": met,
            }
        )
    return results


def targets_text(results: list[dict]) -> str:
    """The targets as lines: MET / MISSED / n/a, measured figure against the limit."""
    lines = []
    for r in results:
        status = {True: "MET   ", False: "MISSED", None: "n/a   "}[r["met"]]
        sign = ">=" if r["higher_is_better"] else "<="
        value = "-" if r["value"] is None else f"{r['value']:.2f}{r['unit']}"
        lines.append(f"  {status} {r['target']}: {value} (target {sign} {r['limit']:g}{r['unit']})")
    return "\n".join(lines)
