"""A real daphne serving the project on a free port, on a SQLite database of its own.

Used by the browser tests' fixtures (conftest.py): the database is migrated once per test run and
copied for every server, so each test starts from the same users and no sessions.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "e2e-Pw-31415"
USERS = ("alice", "bob", "carol")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(database: Path, secret_key: str, **extra: Any) -> dict[str, str]:
    """The environment the server runs with (DEBUG off, as in production)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(
        {
            "DJANGO_SECRET_KEY": secret_key,
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"sqlite:///{database}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("REDIS_URL", None)  # one process, in-memory layer: what `make run` does
    env.update({key: str(value) for key, value in extra.items()})
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py`` with ``env``; return its stdout, raise with its output if it fails."""
    result = subprocess.run(  # noqa: S603 - fixed argv, our own interpreter and manage.py
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def prepare_database(path: Path, secret_key: str) -> None:
    """Migrate a fresh SQLite database at ``path`` and create the test users."""
    env = base_env(path, secret_key)
    manage(env, "migrate", "--noinput")
    names = ", ".join(repr(name) for name in USERS)
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        f"for name in ({names},):\n"
        "    user, _ = User.objects.get_or_create(username=name)\n"
        f"    user.set_password({PASSWORD!r})\n"
        "    user.save()\n",
    )


class Server:
    """One daphne process; ``stop()`` and ``start()`` again keep the port and the database."""

    def __init__(self, workdir: Path, template_db: Path, secret_key: str, **settings: Any) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.database = workdir / "db.sqlite3"
        shutil.copyfile(template_db, self.database)
        self.port = free_port()
        self.env = base_env(self.database, secret_key, **settings)
        self.log_path = workdir / f"daphne-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.extra: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _spawn(self, port: int) -> "subprocess.Popen[bytes]":
        log = open(self.log_path, "ab")  # handed to the child; closed here once it has it
        process = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"daphne exited with {process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return process
            except OSError:
                time.sleep(0.1)
        process.kill()
        raise RuntimeError(f"daphne did not listen on port {port} within 30 s:\n{self.log()}")

    def start(self) -> None:
        self.process = self._spawn(self.port)

    def start_another(self) -> str:
        """A second process on another port, same database; returns its ws:// URL."""
        port = free_port()
        self.extra.append(self._spawn(port))
        return f"ws://127.0.0.1:{port}"

    @staticmethod
    def _end(process: "subprocess.Popen[bytes]", sig: int) -> None:
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the main process (SIGTERM, as a deploy does; SIGKILL for a crash)."""
        if self.process is not None:
            self._end(self.process, sig)
            self.process = None

    def close(self) -> None:
        self.stop()
        for process in self.extra:
            self._end(process, signal.SIGTERM)

    def manage_shell(self, code: str) -> str:
        """Run Python in ``manage.py shell`` against this server's database; return its stdout."""
        return manage(self.env, "shell", "-c", code)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""
