"""Start, restart one at a time, and stop the server processes of a run directory.

    python scripts/rolling_restart.py start --run-dir DIR --name daphne-1 \\
        --health http://127.0.0.1:8001/healthz [--env-file FILE] -- python -m daphne -p 8001 project.asgi:application
    python scripts/rolling_restart.py restart --run-dir DIR [--stop-timeout S] [--start-timeout S]
    python scripts/rolling_restart.py stop --run-dir DIR

``make rolling-restart RUN_DIR=DIR`` runs ``restart``.

**The run directory contract** (what a layout that starts processes, e.g. ``make prod``, writes so
that this script can restart them; ``start`` writes it):

- ``DIR/<name>.pid``: the process id, in decimal, of the server process named ``<name>``
  (``daphne-1``, ``daphne-2``, ...; any name of letters, digits, ``-`` and ``_``).
- ``DIR/<name>.json``: how to start it again: ``{"argv": [...], "cwd": "...", "health": "http://...",
  "env_file": "..." | null, "log": "..." | null}``. ``argv`` is the command line (the process's
  ``/proc/<pid>/cmdline`` must still be it, else the pid is taken for another process's and not
  signalled); ``health`` is the URL that answers 200 once the process serves (``/healthz``);
  ``env_file``, if any, holds ``KEY=VALUE`` lines added to this script's environment for the new
  process (so secrets stay in one file, mode 0600); ``log``: the file its output is appended to.

**Restart**, for each name in sorted order, one at a time: SIGTERM the process (it drains:
stops listening, closes each socket with 1012 after its last reply, sessions_app/drain.py), wait
until it has exited (``--stop-timeout`` seconds, then SIGKILL), start the same command again, write
its pid, and wait until its health URL answers 200 (``--start-timeout``) before the next one. Its
clients meanwhile reconnect to the other processes and re-join with ``since``. Exits 1, leaving the
rest untouched, when a new process does not become healthy. Only the standard library is used.

A ``health`` URL may also be ``http+unix://<socket path, percent-encoded>/healthz``: asked over
that unix socket (a daphne started with ``-e unix:...``), with ``Host: localhost``.

**A supervised run directory** (``make prod``, scripts/prod.py): ``DIR/prod.pid`` names the
supervisor, which started its processes itself and restarts any that exits. ``restart`` then asks
it (SIGHUP) to do the same restart, one process at a time, with this module's ``roll``, and waits
for the outcome it writes to ``DIR/rolling-restart.json`` (``{"number": n, "state": "running" |
"done" | "failed", "message": "..."}``); ``stop`` sends it SIGTERM and waits for its exit.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

NAME = re.compile(r"[A-Za-z0-9_-]+")


def log(message: str) -> None:
    print(f"rolling_restart: {message}", file=sys.stderr, flush=True)


# --- the run directory -------------------------------------------------------------------------


def names(run_dir: Path) -> list[str]:
    """The names of the processes recorded in ``run_dir`` (each ``<name>.pid`` with its ``.json``)."""
    return sorted(p.stem for p in run_dir.glob("*.pid") if NAME.fullmatch(p.stem) and p.with_suffix(".json").exists())


def record(run_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((run_dir / f"{name}.json").read_text())


def read_pid(run_dir: Path, name: str) -> int | None:
    try:
        return int((run_dir / f"{name}.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def running(pid: int, argv: list[str] | None = None) -> bool:
    """True while ``pid`` runs (a zombie counts as exited), with ``argv`` as its command line if given."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False  # our own child, just reaped
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        return False
    return argv is None or cmdline.split(b"\0")[:-1] == [arg.encode() for arg in argv]


def environment(env_file: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if env_file:
        for line in Path(env_file).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                env[key.strip()] = value
    return env


def spawn(run_dir: Path, name: str) -> int:
    """Start ``name``'s recorded command in a session of its own; write and return its pid."""
    entry = record(run_dir, name)
    log_path = entry.get("log") or str(run_dir / f"{name}.log")
    with open(log_path, "ab") as output:
        process = subprocess.Popen(  # noqa: S603 - the operator's own recorded command
            entry["argv"],
            cwd=entry.get("cwd") or None,
            env=environment(entry.get("env_file")),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_path = run_dir / f"{name}.pid"
    pid_path.with_suffix(".pid.tmp").write_text(f"{process.pid}\n")
    pid_path.with_suffix(".pid.tmp").replace(pid_path)
    return process.pid


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over the unix socket at ``path`` (http.client's connection, another ``connect``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def healthy(url: str, host: str = "localhost") -> bool:
    """True when ``url`` answers 200 within 2 s: ``http://...``, or ``http+unix://<socket path,
    percent-encoded>/path`` over a unix socket, sent with ``Host: <host>`` (one Django allows)."""
    if url.startswith("http+unix://"):
        parts = urllib.parse.urlsplit(url)
        connection = _UnixHTTPConnection(urllib.parse.unquote(parts.netloc), timeout=2)
        try:
            connection.request("GET", parts.path or "/", headers={"Host": host})
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - the operator's URL
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# --- commands ------------------------------------------------------------------------------------


def start(run_dir: Path, name: str, argv: list[str], health: str, env_file: str | None, timeout: float) -> int:
    """Record ``name`` (the contract above), start it, and wait for its health URL; returns 0 or 1."""
    if not NAME.fullmatch(name):
        raise SystemExit(f"bad process name {name!r}")
    run_dir.mkdir(parents=True, exist_ok=True)
    entry = {"argv": argv, "cwd": os.getcwd(), "health": health, "env_file": env_file, "log": None}
    (run_dir / f"{name}.json").write_text(json.dumps(entry, indent=2) + "\n")
    pid = spawn(run_dir, name)
    if not wait_for(lambda: healthy(health) or not running(pid), timeout) or not running(pid):
        log(f"{name} (pid {pid}) did not become healthy at {health}")
        return 1
    log(f"{name} started (pid {pid})")
    return 0


def stop_one(run_dir: Path, name: str, timeout: float) -> None:
    """SIGTERM ``name`` (it drains) and wait until it has exited; SIGKILL after ``timeout`` s."""
    pid = read_pid(run_dir, name)
    argv = record(run_dir, name)["argv"]
    if pid is None or not running(pid, argv):
        log(f"{name} is not running")
        return
    os.kill(pid, signal.SIGTERM)
    if not wait_for(lambda: not running(pid), timeout):
        log(f"{name} (pid {pid}) still runs {timeout} s after SIGTERM: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not running(pid), 10)


def roll(
    names: Iterable[str],
    stop: Callable[[str], None],
    start: Callable[[str], int],
    health: Callable[[str], str],
    start_timeout: float,
    *,
    alive: Callable[[int], bool] = running,
    host: str = "localhost",
    abort: Callable[[], bool] = lambda: False,
    unhealthy: Callable[[str], None] = lambda name: None,
    progress: Callable[[str], None] = log,
) -> int:
    """The rolling restart: for each name in turn, ``stop(name)`` (returns once the process has
    exited), ``start(name)`` (returns the new process id), then wait until ``health(name)``'s URL
    answers 200 (``healthy``, with ``host``), at most ``start_timeout`` seconds, before the next.
    Returns 0, or 1 (the rest left untouched) when a new process exits or does not become healthy
    (then ``unhealthy(name)`` is called: the supervisor stops it, scripts/prod_supervisor.py), or
    ``abort()`` turned true (the caller is being stopped). Each step is one line to ``progress``."""
    for name in names:
        began = time.monotonic()
        progress(f"{name}: stopping (it drains)")
        stop(name)
        stopped = time.monotonic()
        pid = start(name)
        url = health(name)
        progress(f"{name}: stopped in {stopped - began:.2f} s; waiting for pid {pid} to answer 200 at {url}")

        def settled(pid: int = pid, url: str = url) -> bool:
            return abort() or not alive(pid) or healthy(url, host)

        if not wait_for(settled, start_timeout) or abort() or not alive(pid):
            progress(f"{name} (pid {pid}) did not become healthy at {url}: stopping the restart")
            if not abort():
                unhealthy(name)
            return 1
        ready = time.monotonic() - stopped
        progress(f"{name} restarted (pid {pid}): stopped in {stopped - began:.2f} s, healthy {ready:.2f} s later")
    return 0


def restart(run_dir: Path, stop_timeout: float, start_timeout: float) -> int:
    """Restart every recorded process, one at a time (the module's docstring); returns 0 or 1."""
    found = names(run_dir)
    if not found:
        log(f"no processes recorded in {run_dir}")
        return 1
    return roll(
        found,
        lambda name: stop_one(run_dir, name, stop_timeout),
        lambda name: spawn(run_dir, name),
        lambda name: record(run_dir, name)["health"],
        start_timeout,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    starting = commands.add_parser("start", help="record and start one process")
    starting.add_argument("--name", required=True)
    starting.add_argument("--health", required=True, help="URL answering 200 when it serves")
    starting.add_argument("--env-file")
    starting.add_argument("--start-timeout", type=float, default=60.0)
    starting.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the command")
    restarting = commands.add_parser("restart", help="restart every recorded process, one at a time")
    restarting.add_argument("--stop-timeout", type=float, default=30.0, help="seconds to drain (then SIGKILL)")
    restarting.add_argument("--start-timeout", type=float, default=60.0, help="seconds to become healthy")
    stopping = commands.add_parser("stop", help="SIGTERM every recorded process and wait")
    stopping.add_argument("--stop-timeout", type=float, default=30.0)
    for sub in (starting, restarting, stopping):
        sub.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "start":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            parser.error("start needs a command after --")
        return start(args.run_dir, args.name, command, args.health, args.env_file, args.start_timeout)
    import supervised_run_dir as supervisor_dir  # here: it imports this module

    supervised = supervisor_dir.supervisor(args.run_dir)
    if args.command == "restart" and supervised is not None:
        # Every process drains and starts again, one after the other.
        count = len([p for p in args.run_dir.glob("daphne-*.pid")]) or 1
        timeout = count * (args.stop_timeout + args.start_timeout)
        return supervisor_dir.restart_supervised(args.run_dir, supervised, timeout)
    if args.command == "restart":
        return restart(args.run_dir, args.stop_timeout, args.start_timeout)
    if supervised is not None:
        os.kill(supervised, signal.SIGTERM)
        stopped = wait_for(lambda: not running(supervised), args.stop_timeout + 30)
        log(f"supervisor (pid {supervised}) {'stopped' if stopped else 'still runs'}")
        return 0 if stopped else 1
    for name in names(args.run_dir):
        stop_one(args.run_dir, name, args.stop_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
