"""Issue 13, item 2: a rolling restart of every process while 40 clients patch loses nothing.

Two daphne processes on PostgreSQL and a private Redis, started and restarted through
scripts/rolling_restart.py (its run-directory contract: ``<name>.pid`` and ``<name>.json``). The
writers of tests/rolling.py (40 clients in 4 sessions, appending without pause) patch while
``rolling_restart.py restart`` restarts each process in turn (SIGTERM, drain, start, ``/healthz``);
a client whose socket closes reconnects by itself to the other port (no proxy here). The checks
(tests/rolling.py): only 1012 closes, every client recovered by itself, every acknowledged patch
stored exactly once at its version and nothing else; the recovery times are printed. The same run
through nginx and the production layout: tests/test_production.py.
"""

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import live, rolling

SCRIPT = [sys.executable, str(live.ROOT / "scripts" / "rolling_restart.py")]


def write_env(path: Path, env: dict[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in env.items() if "\n" not in value))
    path.chmod(0o600)


def script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SCRIPT, *args], cwd=live.ROOT, capture_output=True, text=True, timeout=300)  # noqa: S603


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_rolling_restart_under_40_writers_loses_and_duplicates_no_acknowledged_patch(started, tmp_path):
    _name, database_url = started.postgres()
    redis = started.redis()
    run_dir = tmp_path / "run"
    env_file = tmp_path / "daphne.env"
    write_env(env_file, live.base_env(database_url, redis.url, **rolling.SETTINGS))
    ports = [live.free_port(), live.free_port()]
    try:
        for number, port in enumerate(ports, 1):
            argv = [arg.replace("{port}", str(port)) for arg in live.Daphne.server_argv("project.asgi:application", ())]
            health = f"http://127.0.0.1:{port}/healthz"
            result = script("start", "--run-dir", str(run_dir), "--name", f"daphne-{number}", "--health", health,
                            "--env-file", str(env_file), "--", *argv)  # fmt: skip
            assert result.returncode == 0, result.stderr
        await run_writers(run_dir, database_url, ports)
    finally:
        script("stop", "--run-dir", str(run_dir), "--stop-timeout", "20")


async def run_writers(run_dir: Path, database_url: str, ports: list[int]) -> None:
    urls = [f"ws://127.0.0.1:{port}" for port in ports]
    sessions, writers = await rolling.prepare(f"http://127.0.0.1:{ports[0]}", urls[0], urls)

    async def restart() -> None:
        process = await asyncio.create_subprocess_exec(
            *SCRIPT, "restart", "--run-dir", str(run_dir), cwd=live.ROOT, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 300)
        print(stderr.decode())
        assert process.returncode == 0, stderr.decode()

    await rolling.write_through(writers, restart)
    print(rolling.check_writers(writers))

    def query(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    rolling.check_stored(query, sessions, writers)


def test_stop_signals_only_the_recorded_command_and_waits_for_it(tmp_path):
    """A pid file whose process runs another command (the pid was reused) is not signalled."""
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "recorded"]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "other"])
    recorded = subprocess.Popen(argv)  # noqa: S603
    try:
        entry = {"argv": argv, "cwd": str(tmp_path), "health": "http://127.0.0.1:1/healthz", "env_file": None}
        (tmp_path / "daphne-1.json").write_text(json.dumps(entry))
        (tmp_path / "daphne-1.pid").write_text(f"{other.pid}\n")
        result = script("stop", "--run-dir", str(tmp_path), "--stop-timeout", "5")
        assert result.returncode == 0 and "daphne-1 is not running" in result.stderr, result.stderr
        assert other.poll() is None, "another command's process was signalled"
        (tmp_path / "daphne-1.pid").write_text(f"{recorded.pid}\n")
        result = script("stop", "--run-dir", str(tmp_path), "--stop-timeout", "5")
        assert result.returncode == 0, result.stderr
        assert recorded.wait(timeout=5) == -signal.SIGTERM
    finally:
        for process in (other, recorded):
            process.kill()
            process.wait()
