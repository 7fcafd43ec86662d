"""The targets of issue 16 (patch cost against document size, handshake CPU against the peers,
fan-out on uvicorn, memory per connection), checked on the rows of one run like issue 6's
(report.targets)."""

from __future__ import annotations

from collections.abc import Callable

from report import Row, Target, find, ratio

# The smallest and largest document of the patch-size workload, as scenarios.size_label names them.
SMALL_DOC, LARGE_DOC = "1 KiB", "1 MiB"


def _size_ratio(db: str, server: str) -> Callable[[list[Row]], float | None]:
    """CPU per patch at the largest document over CPU per patch at the smallest, on `db`."""

    def measure(rows: list[Row]) -> float | None:
        large = find(rows, "patch-size", f"{LARGE_DOC}, {db}", server)
        small = find(rows, "patch-size", f"{SMALL_DOC}, {db}", server)
        if large is None or small is None:
            return None
        theirs = small["median"].get("cpu_us_per_op")
        return large["median"].get("cpu_us_per_op") / theirs if theirs else None

    return measure


def _small_patch(db: str, server: str) -> Callable[[list[Row]], float | None]:
    """CPU per patch of the `patch` workload on `db` (else the patch-size row of the smallest document)."""

    def measure(rows: list[Row]) -> float | None:
        row = find(rows, "patch", db, server) or find(rows, "patch-size", f"{SMALL_DOC}, {db}", server)
        return row["median"].get("cpu_us_per_op") if row else None

    return measure


def _cpu_ratio(workload: str, variant: str, server: str, peer: str) -> Callable[[list[Row]], float | None]:
    """`server`'s CPU per operation over `peer`'s, same workload and variant."""

    def measure(rows: list[Row]) -> float | None:
        row = find(rows, workload, variant, server)
        return ratio(rows, row, peer, "cpu_us_per_op") if row else None

    return measure


def _figure(workload: str, variant: str, server: str, key: str) -> Callable[[list[Row]], float | None]:
    def measure(rows: list[Row]) -> float | None:
        row = find(rows, workload, variant, server)
        return row["median"].get(key) if row else None

    return measure


def issue16(fanout_variants: list[str], memory_variants: list[str]) -> list[Target]:
    """The targets of issue 16 for the variants this run measured (each MET / MISSED / n/a)."""
    found = []
    for db, limit in (("sqlite", 600.0), ("postgresql", 1000.0)):
        found.append(
            Target(
                f"patch CPU {LARGE_DOC} / {SMALL_DOC} document, {db}, ours (daphne)",
                1.5,
                False,
                "x",
                _size_ratio(db, "ours-daphne"),
            )
        )
        found.append(
            Target(
                f"small-document patch CPU, {db}, ours (daphne)", limit, False, "µs", _small_patch(db, "ours-daphne")
            )
        )
    found += [
        Target(
            "connect+auth CPU: ours (uvicorn) vs FastAPI peer",
            1.0,
            False,
            "x",
            _cpu_ratio("connect", "50 concurrent", "ours-uvicorn", "fastapi"),
        ),
        Target(
            "connect+auth CPU: ours (daphne) vs bare ASGI peer (daphne)",
            1.2,
            False,
            "x",
            _cpu_ratio("connect", "50 concurrent", "ours-daphne", "asgi-daphne"),
        ),
    ]
    for v in fanout_variants:
        if v.startswith("1000 "):
            found.append(
                Target(f"fan-out p99 {v}, daphne", 50.0, False, "ms", _figure("fanout", v, "ours-daphne", "p99_ms"))
            )
            found.append(
                Target(f"fan-out p99 {v}, uvicorn", 20.0, False, "ms", _figure("fanout", v, "ours-uvicorn", "p99_ms"))
            )
    for v in memory_variants:
        for server, label in (("ours-daphne", "daphne"), ("ours-uvicorn", "uvicorn")):
            found.append(
                Target(
                    f"memory per idle conn {v}, ours ({label})",
                    18.0,
                    False,
                    "KiB",
                    _figure("memory", v, server, "kib_per_conn"),
                )
            )
    return found
