"""What ``bench/load.py churn`` (bench/churn.py) reports: the problems in the servers' logs, the
full report of each layer and the table that puts the layers side by side."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

LOG_PROBLEM = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback \(most recent call last\)|Unhandled error")


def scan_log(path: Path, stopped_at: int) -> dict[str, Any]:
    """A server log's problems while it ran, and from ``stopped_at`` (its size when it was sent
    SIGTERM) on, at its stop."""
    data = path.read_bytes()
    return {"run": scan_text(data[:stopped_at]), "stop": scan_text(data[stopped_at:])}


def scan_text(data: bytes) -> dict[str, Any]:
    """ERROR / CRITICAL lines and tracebacks of a server log, counted and quoted (first ones)."""
    lines = data.decode(errors="replace").splitlines()
    problems = [i for i, line in enumerate(lines) if LOG_PROBLEM.search(line)]
    warnings = Counter()
    for line in lines:
        if " WARNING " in line:
            warnings[re.sub(r"^\S+ \S+ ", "", line)[:160]] += 1
    quotes: list[str] = []
    seen: set[str] = set()
    for i in problems:
        key = re.sub(r"^[\d\-: ,.]+", "", lines[i])
        if key in seen:
            continue
        seen.add(key)
        block = [lines[i]]
        for line in lines[i + 1 : i + 40]:  # the traceback under it, up to its last line
            if line.startswith((" ", "\t", "Traceback", "During handling", "The above exception")) or (
                block[-1].startswith("    ") and re.match(r"^[\w.]+(Error|Exception|Exit|Disconnected)\b", line)
            ):
                block.append(line)
            else:
                break
        quotes.append("\n".join(block))
        if len(quotes) >= 8:
            break
    return {
        "error_lines": sum(1 for line in lines if re.search(r"\b(ERROR|CRITICAL)\b", line)),
        "tracebacks": sum(1 for line in lines if line.startswith("Traceback (most recent call last)")),
        "quotes": quotes,
        "warnings": dict(warnings.most_common(10)),
    }


def table(reports: list[dict[str, Any]]) -> str:
    head = [
        "layer",
        "acked/s",
        "conflicts",
        "pushes",
        "delivered",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 incl. dropped, >=",
        ">1 s",
        "dropped stale",
        "missing",
        "backlog max",
        "backlog mean",
        "ERROR lines",
        "tracebacks",
        "ERROR at stop",
        "srv CPU",
        "churn conn/s",
        "garbage/s",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in reports:
        d, b, c = r["delivery"], r["backlog"], r["churn"]
        logs = [log["run"] for log in r["server_logs"].values()]
        at_stop = [log["stop"] for log in r["server_logs"].values()]
        cells = [
            f"{r['layer']['name']} (FANOUT={r['layer']['CHANNEL_LAYER_FANOUT']})",
            r["acked_per_s"],
            r["conflicts"],
            d["expected"],
            d["delivered"],
            d["delay_ms"]["p50"],
            d["delay_ms"]["p99"],
            d["delay_ms"]["max"],
            d["delay_incl_dropped_at_least_ms"]["p99"],
            d["over_1s"],
            d["dropped_stale"],
            d["missing"],
            b["max"],
            b["mean"],
            sum(log["error_lines"] for log in logs),
            sum(log["tracebacks"] for log in logs),
            sum(log["error_lines"] for log in at_stop),
            " + ".join(f"{p:.0f}%" for p in r["server_cpu_percent"]),
            c["connects_per_s"],
            c["garbage_frames_per_s"],
        ]
        rows.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(rows)


def print_details(reports: list[dict[str, Any]]) -> None:
    """Each layer's report (without its samples), and what its servers logged, quoted."""
    for r in reports:
        print(f"\n== {r['layer']['name']} layer (CHANNEL_LAYER_FANOUT={r['layer']['CHANNEL_LAYER_FANOUT']}) ==")
        summary = {k: v for k, v in r.items() if k not in {"backlog_samples", "server_logs", "layer"}}
        print(json.dumps(summary, indent=1))
        for server, both in r["server_logs"].items():
            for when, log in (("while running", both["run"]), ("at its stop", both["stop"])):
                print(f"{server} {when}: {log['error_lines']} ERROR lines, {log['tracebacks']} tracebacks")
                for quote in log["quotes"]:
                    print("    " + quote.replace("\n", "\n    "))
                for line, count in log["warnings"].items():
                    print(f"    WARNING x{count}: {line}")
