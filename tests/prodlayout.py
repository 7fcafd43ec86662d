"""The production layout (scripts/prod.py) for the tests: started on a fresh PostgreSQL database
``interactive_prod_<random>`` (migrated, with tests/live.py's users; dropped afterwards) and a private
``redis-server`` on a free port, as an operator would start it; HTTP helpers through its nginx."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests import live

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Layout:
    """The running layout: nginx's URLs, the script's output, the database."""

    port: int
    database_url: str
    run_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def pids(self) -> dict[str, int]:
        """The process ids in the run directory: ``daphne-<n>`` (scripts/prod.py) and ``nginx``."""
        return {path.stem: int(path.read_text()) for path in sorted(self.run_dir.glob("*.pid")) if path.stem != "prod"}

    def token(self, username: str) -> str:
        status, body = live.http_json(self.http + "/api/v1/token/", {"username": username, "password": live.PASSWORD})
        assert status == 200, (status, body)
        return body["access"]


def child_pids(log: str) -> list[int]:
    """Every process id the script's own lines name (its ``ready`` line, the restarts)."""
    lines = "\n".join(line for line in log.splitlines() if line.startswith("prod | "))
    return [int(pid) for pid in re.findall(r"pid (\d+)", lines)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


@contextlib.contextmanager
def running_layout(workdir: Path, checkout: Path = ROOT, expect: int = 0, **settings: Any) -> Iterator[Layout]:
    """``scripts/prod.py`` of ``checkout`` (this one, or a copy: ``copy_checkout``) on a fresh
    database and a private Redis, with ``settings`` as variables, until the block ends; then
    SIGTERM, and every process it started must be gone. ``expect``: the script's exit status (0: a
    clean stop; else the test stopped it otherwise, and the final ``stopped`` line is not checked)."""
    with live.processes(workdir) as started:
        redis = started.redis()
        _, database_url = started.postgres(prefix=f"{live.PG_PREFIX}_prod")
        port = live.free_port()
        env = live.base_env(
            database_url,
            redis.url,
            **{"PROCESSES": 2, "PROD_LISTEN": f"127.0.0.1:{port}", "PROD_RUN_DIR": workdir / "run", **settings},
        )
        log_path = workdir / "prod.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "scripts/prod.py"], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        running = Layout(port, database_url, workdir / "run", log_path, process)
        try:
            live.wait_until(
                lambda: "prod | ready:" in running.log() or process.poll() is not None, 180, "the layout to start"
            )
            assert process.poll() is None, running.log()
            yield running
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                status = process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                raise
    # Outside the finally: a start-up failure above is reported as itself.
    assert status == expect, running.log()[-4000:]
    if expect == 0:
        assert running.log().rstrip().endswith("prod | stopped")
    assert [pid for pid in child_pids(running.log()) if alive(pid)] == []


def copy_checkout(target: Path) -> Path:
    """A copy of this checkout's tracked files (as they are on disk) at ``target``, for a test that
    deploys changed code to it; the same .venv runs it (sys.executable)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (target / source.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.relative_to(ROOT))
    return target


def nginx_workers(master: int) -> list[int]:
    """The process ids of nginx's workers (the master's children, /proc)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - the local layout
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def daphne_access_lines(layout: Layout) -> list[str]:
    """daphne's access log lines (on its stdout, copied by the script as ``daphne-<n> | ...``)."""
    return [line for line in layout.log().splitlines() if re.match(r"daphne-\d+ \| \S+ - - \[", line)]
