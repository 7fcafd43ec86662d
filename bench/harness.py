"""The state of one benchmark run: its parameters, data, servers side by side, load generator
jobs and the rows it collects (used by bench/scenarios.py, driven by bench/run.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fixtures
import metrics
import report
import servers
from fixtures import live
from servers import SERVERS, Running, ServerSpec

logger = logging.getLogger("bench")

BENCH = Path(__file__).resolve().parent
LOGS = BENCH / "results" / "logs"
SERVER_CPU, LOADGEN_CPU = "0", "1"


def settle(pids: list[int], limit: float = 15.0) -> None:
    """Wait until the freshly started servers are done starting up (under 5% of a CPU over 0.5 s,
    at most `limit` seconds), so that start-up work does not land in the first measured window."""
    deadline = time.monotonic() + limit
    last = metrics.cpu_seconds(pids)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = metrics.cpu_seconds(pids)
        if now - last < 0.025:
            return
        last = now
    logger.warning("servers still busy %.0f s after start", limit)


@dataclass(frozen=True)
class Params:
    """Sizes and durations of one run (full or --quick)."""

    warmup: float = 1.0
    duration: float = 3.0
    repeats: int = 3
    ping_connections: tuple[int, ...] = (50, 500, 5000)
    connect_concurrency: int = 50
    patch_connections: int = 10
    # patch-size (issue 16): document sizes in bytes of compact JSON (the largest just under
    # SESSIONS_MAX_DOCUMENT_BYTES, 1 MiB), and the editors, each on its own document.
    patch_sizes: tuple[int, ...] = (1024, 65536, 262144, 1040000)
    patch_size_connections: int = 4
    fanout_members: tuple[int, ...] = (10, 100, 1000)
    fanout_samples: int = 20
    fanout_warmup: int = 3
    # The fan-out's stock-path rows (`[stock layer]`, `[stock send]`); --quick leaves them out.
    fanout_stock_rows: bool = True
    memory_steps: tuple[int, ...] = (1000, 5000)
    memory_repeats: int = 2
    users: int = 20
    token_lifetime: int = 3600


QUICK = Params(
    warmup=1.0,
    duration=1.5,
    repeats=1,
    ping_connections=(50, 500),
    patch_sizes=(1024, 1040000),
    fanout_members=(1000,),
    fanout_samples=8,
    fanout_warmup=2,
    fanout_stock_rows=False,
    memory_steps=(1000,),
    memory_repeats=1,
)

WORKLOAD_SERVERS = {
    "ping": (
        "websockets",
        "fastapi",
        "asgi-daphne",
        "channels",
        "channels-uvicorn",
        "ours-daphne",
        "ours-uvicorn",
        "ours-granian",
    ),
    "connect": ("websockets", "fastapi", "asgi-daphne", "channels", "ours-daphne", "ours-uvicorn", "ours-granian"),
    "patch": ("ours-daphne", "ours-uvicorn"),
    "patch-size": ("ours-daphne",),
    "fanout": ("channels", "ours-daphne+stocklayer", "ours-daphne+stocksend", "ours-daphne", "ours-uvicorn"),
    "memory": ("websockets", "fastapi", "asgi-daphne", "channels", "ours-daphne", "ours-uvicorn", "ours-granian"),
}


class Bench:
    """One benchmark run: its data, environment, and collected rows."""

    def __init__(self, args: argparse.Namespace, params: Params, work: Path) -> None:
        self.args, self.params, self.work = args, params, work
        self.secret = fixtures.new_secret()
        self.rows: list[report.Row] = []
        self.notes: list[str] = []
        self.sqlite = fixtures.sqlite_database(work)
        fixtures.prepare(self.sqlite, self.env(), params.users)
        self._postgres: fixtures.Database | None = None

    def postgres(self) -> fixtures.Database | None:
        """The run's throwaway PostgreSQL database (created on first use), or None if there is
        no PostgreSQL on 127.0.0.1:5432."""
        if self._postgres is None and fixtures.postgres_available():
            self._postgres = fixtures.postgres_database()
            fixtures.prepare(self._postgres, self.env(self._postgres), self.params.users)
        return self._postgres

    def close(self) -> None:
        """Drop the PostgreSQL database and keep the servers' logs in bench/results/logs."""
        if self._postgres is not None:
            fixtures.drop_postgres(self._postgres)
            self._postgres = None
        LOGS.mkdir(parents=True, exist_ok=True)
        for old in LOGS.glob("*.log"):
            old.unlink()
        for log in self.work.glob("*.log"):
            shutil.copy(log, LOGS / log.name)

    def env(self, db: fixtures.Database | None = None, **extra: str) -> dict[str, str]:
        """The servers' environment (the protocol's settings, benchmark limits, `--env`)."""
        db = db or self.sqlite
        env = live.base_env(
            db.url,
            secret_key=self.secret,
            BENCH_SQLITE_PATH=self.work / "bench.sqlite3",
            SESSIONS_RATE_LIMIT=1000000,
            SESSIONS_RATE_BURST=1000000,
            SESSIONS_MAX_CONNECTIONS_PER_USER=100000,
            JWT_ACCESS_LIFETIME=self.params.token_lifetime,
        )
        return env | dict(kv.split("=", 1) for kv in self.args.env) | extra

    def tokens(self, db: fixtures.Database) -> tuple[list[str], list[str]]:
        """Access tokens and usernames of the benchmark users, in id order."""
        users = sorted(db.users.items(), key=lambda item: item[1])
        lifetime = self.params.token_lifetime
        tokens = [fixtures.access_token(self.secret, uid, lifetime) for _, uid in users]
        return tokens, [name for name, _ in users]

    def specs_for(self, workload: str) -> list[ServerSpec]:
        """The servers `workload` runs against, as selected on the command line, each followed by
        its `--variant`s."""
        specs = []
        for key in WORKLOAD_SERVERS[workload]:
            if workload == "fanout" and "+stock" in key and not self.params.fanout_stock_rows:
                continue
            if key in self.args.servers:
                specs.append(SERVERS[key])
            specs += [v for v in self.args.variants if v.key.split("+")[0] == key]
        skipped = [s.key for s in specs if s.ours and not fixtures.project_ready()]
        if skipped:
            self.note(f"{workload}: skipped {', '.join(skipped)} (project/asgi.py not there yet)")
        return [s for s in specs if s.key not in skipped]

    def note(self, text: str) -> None:
        """Record a remark for the report."""
        logger.warning(text)
        self.notes.append(text)

    def loadgen(self, job: dict[str, Any], runs: list[Running]) -> dict:
        """Run one load generator job against `runs`, pinned to the load generator's CPU."""
        job = {"server_pids": [r.pid for r in runs], "urls": [r.socket_url for r in runs], **job}
        timeout = job.setdefault("timeout", 300)
        done = subprocess.run(
            ["taskset", "-c", LOADGEN_CPU, sys.executable, str(BENCH / "loadgen.py")],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            cwd=BENCH,
            timeout=timeout + 30,
            check=False,
        )
        logger.debug("loadgen %s stderr: %s", job["job"], done.stderr)
        if done.returncode:
            lines = done.stderr.strip().splitlines() or ["(no output)"]
            raise RuntimeError(f"loadgen {job['job']}: {lines[-1]}")
        return json.loads(done.stdout)

    def record(self, workload: str, variant: str, spec: ServerSpec, repeats: list[dict], **extra: Any) -> None:
        """Add (or extend) the row of (workload, variant, server) with measured repeats."""
        for row in self.rows:
            if (row["workload"], row["variant"], row["server"]) == (workload, variant, spec.key):
                row["repeats"] += repeats
                row["median"] = report.summarise_repeats(row["repeats"])
                return
        self.rows.append(
            {
                "workload": workload,
                "variant": variant,
                "server": spec.key,
                "label": spec.label,
                "repeats": repeats,
                "median": report.summarise_repeats(repeats),
                "error": None,
                **extra,
            }
        )

    def measure(
        self,
        workload: str,
        variant: str,
        spec: ServerSpec,
        job: dict[str, Any],
        runs: list[Running],
        repeat: int | None = None,
        **extra: Any,
    ) -> None:
        """Run `job` against `runs` and add its repeats to the row (workload, variant, server), with
        `extra` fields; record the failure instead if it fails."""
        logger.info("%s %s on %s%s", workload, variant, spec.label, f", repeat {repeat}" if repeat else "")
        try:
            result = self.loadgen(job, runs)
        except Exception as exc:  # noqa: BLE001 - record the failure, go on
            self.failed(workload, variant, spec, exc)
        else:
            self.record(workload, variant, spec, result["repeats"], **extra)

    def failed(self, workload: str, variant: str, spec: ServerSpec, exc: BaseException) -> None:
        """Record a failed measurement instead of figures; the run goes on."""
        logger.error("%s %s on %s failed: %s", workload, variant, spec.label, exc)
        self.rows.append(
            {
                "workload": workload,
                "variant": variant,
                "server": spec.key,
                "label": spec.label,
                "repeats": [],
                "median": {},
                "error": str(exc),
            }
        )

    @contextlib.contextmanager
    def side_by_side(
        self,
        specs: list[ServerSpec],
        env: dict[str, str],
        db: fixtures.Database,
        cpus: tuple[str, ...] = (SERVER_CPU,),
    ) -> Iterator[dict[str, list[Running]]]:
        """Start every server of `specs`, one process per entry of `cpus` (each pinned to it),
        probe each, and stop all on exit. Yields each started server's processes by key.

        On SQLite, each of our servers gets its own copy of the database: two servers writing one
        file (sessions, heartbeats) would lock each other out and measure SQLite, not the server.
        (The processes of one server share its copy, as a multi-process deployment would.)
        """
        spawned: list[list[Running]] = []
        try:
            for spec in specs:  # all at once: the Django imports overlap
                own_env = env
                if spec.ours and db.sqlite_path:
                    copy = fixtures.sqlite_copy(db, self.work / f"{spec.key}.sqlite3")
                    own_env = {**env, "DATABASE_URL": copy.url}
                spawned.append([servers.spawn(spec, own_env, self.work, cpu=cpu) for cpu in cpus])
            started: dict[str, list[Running]] = {}
            for runs in spawned:
                try:
                    for run in runs:
                        run.wait_ready()
                    self.probe(runs, db)
                    started[runs[0].spec.key] = runs
                except Exception as exc:  # noqa: BLE001 - one broken server must not stop the run
                    self.failed("start", "-", runs[0].spec, exc)
            settle([run.pid for runs in started.values() for run in runs])
            yield started
        finally:
            for runs in spawned:
                for run in runs:
                    run.stop()

    def probe(self, runs: list[Running], db: fixtures.Database | None = None) -> None:
        """Check that `runs` speak the handshake and `ping` before measuring them.

        Three tries, a second apart: listening on the port is not always being ready to serve.
        """
        tokens, _ = self.tokens(db or self.sqlite)
        for attempt in range(3):
            try:
                self.loadgen({"job": "probe", "tokens": tokens, "timeout": 30}, runs)
                return
            except RuntimeError as exc:
                if attempt == 2:
                    raise
                logger.warning("probe of %s failed (%s), trying again", runs[0].spec.label, exc)
                time.sleep(1)
