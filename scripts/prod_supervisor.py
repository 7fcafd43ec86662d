"""The children of scripts/prod.py (`make prod`) and what it does when one exits or on SIGHUP.

- ``Child``: a process in a session of its own (a terminal's Ctrl-C reaches only the script, which
  stops the children in order), its output copied to the script's, each line with its name in front.
  On Linux it gets SIGTERM when the script dies, even by SIGKILL (``prctl(PR_SET_PDEATHSIG)``), so
  no daphne or nginx runs on unsupervised; when it exits, whatever is left of its process group
  (nginx's workers, whose master was killed) is killed.
- ``Daphnes``: the PROCESSES daphne processes, ``daphne-<n>`` on ``<run dir>/daphne-<n>.sock``.

  **Rolling restart** (SIGHUP to the script, or ``make rolling-restart RUN_DIR=<run dir>``, which
  sends it): one process at a time, through scripts/rolling_restart.py's ``roll``: SIGTERM (it
  drains: stops listening, so nginx passes new connections to the others, and closes each socket
  with 1012 after its last reply; sessions_app/drain.py), wait for its exit (SIGKILL after
  ``STOP_TIMEOUT``), start its replacement on the same socket, and wait until ``/healthz`` answers
  200 through that socket, before the next. nginx keeps running, and passes each new connection
  to another process while one is down (deploy/nginx.conf.template, ``upstream``). The outcome goes to
  ``<run dir>/rolling-restart.json`` (scripts/supervised_run_dir.py), with each step as it is
  done. A SIGHUP that comes while a restart is under way is queued: one more restart follows
  (several SIGHUPs meanwhile: one more), so a checkout updated twice never leaves old code running.

  **A replacement that does not become healthy** (it exits, or ``/healthz`` does not answer 200
  within ``START_TIMEOUT``: bad code, a bad setting) stops the restart there: it is stopped
  (SIGTERM, SIGKILL after ``STOP_TIMEOUT``), its socket file removed, and its slot left empty,
  not started again by the crash policy below, until the next rolling restart. nginx's connect()
  to that socket then fails at once (ENOENT) and the request goes to the next process
  (``proxy_next_upstream error``); a process answering 500 at once would otherwise get most
  requests (``least_conn``). The script says how many processes serve, and the outcome is
  ``failed``, so ``make rolling-restart`` exits 1 saying so.

  **A daphne that exits by itself** (a crash, the kernel's OOM killer, a SIGKILL) is started again
  after ``RESTART_DELAY`` seconds times the number of its unexpected exits in the last
  ``CRASH_WINDOW`` seconds, and counted in the output; the others and nginx go on serving, and its
  clients reconnect to them. Only a process that exits unexpectedly more than ``CRASH_LIMIT`` times
  within ``CRASH_WINDOW`` seconds (it cannot run: a bad setting, a database refusing it) makes
  the whole layout stop with exit status 1. (nginx exiting by itself still stops everything: it is
  the one entry point, and a service manager or an operator should see that.)

Only the standard library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import IO

import rolling_restart
from prod_config import ROOT, Config
from supervised_run_dir import write_status

START_TIMEOUT = 60.0  # seconds for a daphne or nginx to listen
STOP_TIMEOUT = 20.0  # seconds for a daphne to drain and exit after SIGTERM (SESSIONS_DRAIN_TIMEOUT: 10), then SIGKILL
RESTART_DELAY = 1.0  # seconds before a daphne that exited by itself is started again, times its recent exits
CRASH_WINDOW = 60.0  # seconds
CRASH_LIMIT = 5  # unexpected exits of one daphne within CRASH_WINDOW that are tolerated
_output_lock = threading.Lock()
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: in the child, ask Linux for SIGTERM when the parent (the thread that
    forked it: the script's main thread) dies (prctl(2), PR_SET_PDEATHSIG); and if it already
    died between fork and prctl, SIGTERM now. Kept to two system calls: a preexec_fn runs
    in the forked child while the script's output threads exist (subprocess's caveat)."""

    def preexec() -> None:
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def say(line: str) -> None:
    """One line of the script's own, ``prod | <line>``."""
    with _output_lock:
        sys.stdout.write(f"prod | {line}\n")
        sys.stdout.flush()


def _copy_output(name: str, stream: IO[bytes]) -> None:
    """Copy a child's output to ours, each line with the child's name in front."""
    for line in iter(stream.readline, b""):
        with _output_lock:
            sys.stdout.buffer.write(f"{name} | ".encode() + line)
            sys.stdout.flush()


class Child:
    """A child process in a session of its own, its output copied to ours."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.process = subprocess.Popen(  # noqa: S603 - our own commands
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent(os.getpid()),
        )  # fmt: skip
        self.started = time.monotonic()
        assert self.process.stdout is not None
        threading.Thread(target=_copy_output, args=(name, self.process.stdout), daemon=True).start()

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, timeout: float) -> None:
        """Wait for the exit; SIGKILL (and wait) after ``timeout`` seconds; then kill what is left
        of its process group (``kill_group``)."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop in {timeout:g} s: SIGKILL")
            self.process.kill()
            self.process.wait()
        self.kill_group()

    def kill_group(self) -> None:
        """SIGKILL every process left in the child's process group (its session, ``pgid`` = its
        pid) once it has exited: nginx's workers outlive a master killed by SIGKILL (re-parented
        to PID 1, still listening on PROD_LISTEN). Nothing when the group is empty."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        say(f"{self.name}: killed the processes left in its process group {self.process.pid}")


def daphne_argv(config: Config, index: int) -> list[str]:
    # mode=660: the socket's group (nginx's, under systemd) may connect; backlog: a burst of
    # reconnects after a restart waits in the queue instead of being refused (nginx: 502).
    endpoint = f"unix:{config.socket_path(index)}:mode=660:backlog=1024"
    return [sys.executable, "-m", "daphne", "-e", endpoint, "--proxy-headers", *config.daphne_args,
            "project.asgi:application"]  # fmt: skip


def allowed_host(env: dict[str, str]) -> str:
    """A Host header Django accepts (DJANGO_ALLOWED_HOSTS' first plain name; ``localhost``)."""
    for name in env.get("DJANGO_ALLOWED_HOSTS", "").split(","):
        name = name.strip()
        if name and name != "*" and not name.startswith("."):
            return name
    return "localhost"


class Daphnes:
    """The layout's daphne processes (the module's docstring): started, restarted one at a time,
    started again when one exits by itself. Used from the script's main thread only."""

    def __init__(self, config: Config, stopping: Callable[[], bool]) -> None:
        self.config = config
        self.stopping = stopping
        self.names = [f"daphne-{index}" for index in range(config.processes)]
        self.children: dict[str, Child] = {}
        self.exits: dict[str, list[float]] = {name: [] for name in self.names}  # unexpected, monotonic times
        self.due: dict[str, float] = {}  # name -> when to start it again
        self.empty: set[str] = set()  # stopped after a failed rolling restart: not started again
        self.restarts = 0
        self.steps: list[str] = []  # the current rolling restart's progress lines

    def start(self, name: str) -> int:
        """Start ``name`` on its socket (a stale socket file, left by a process that was killed,
        is removed first: daphne cannot listen on it); record its pid; returns it."""
        index = self.names.index(name)
        self.due.pop(name, None)  # a restart of a process that had exited by itself
        self.empty.discard(name)
        self.config.socket_path(index).unlink(missing_ok=True)
        child = Child(name, daphne_argv(self.config, index))
        self.children[name] = child
        pid_path = self.config.run_dir / f"{name}.pid"
        pid_path.with_suffix(".pid.tmp").write_text(f"{child.process.pid}\n")
        pid_path.with_suffix(".pid.tmp").replace(pid_path)
        return child.process.pid

    def stop(self, name: str) -> None:
        """SIGTERM ``name`` and wait for its exit (it drains); SIGKILL after STOP_TIMEOUT."""
        child = self.children[name]
        child.signal(signal.SIGTERM)
        child.wait(STOP_TIMEOUT)

    def alive(self, pid: int) -> bool:
        return any(c.process.pid == pid and c.process.poll() is None for c in self.children.values())

    def health_url(self, name: str) -> str:
        path = str(self.config.socket_path(self.names.index(name)))
        return f"http+unix://{urllib.parse.quote(path, safe='')}/healthz"

    def pids(self) -> str:
        return ", ".join(f"{name} pid {child.process.pid}" for name, child in self.children.items())

    def serving(self) -> list[str]:
        """The names whose process runs (not an empty slot, not exited)."""
        return [n for n, c in self.children.items() if n not in self.empty and c.process.poll() is None]

    def leave_empty(self, name: str) -> None:
        """The replacement ``name`` did not become healthy: stop it (SIGTERM, SIGKILL after
        STOP_TIMEOUT), remove its socket file (nginx's connect() fails at once: the next process),
        and leave its slot empty until the next rolling restart (the module's docstring)."""
        self.empty.add(name)
        self.stop(name)
        self.config.socket_path(self.names.index(name)).unlink(missing_ok=True)
        (self.config.run_dir / f"{name}.pid").unlink(missing_ok=True)
        serving = self.serving()
        self._step(
            f"WARNING: {name} stopped, its slot empty until the next rolling restart: "
            f"{len(serving)} of {len(self.names)} processes serve ({', '.join(serving) or 'none'})"
        )

    def _step(self, line: str) -> None:
        """One line of the rolling restart's progress: in the output and rolling-restart.json."""
        say(line)
        self.steps.append(line)
        write_status(self.config.run_dir, self.restarts, "running", steps=self.steps)

    def rolling_restart(self) -> bool:
        """Restart every daphne, one at a time (the module's docstring); True when all did."""
        self.restarts += 1
        self.steps = []
        write_status(self.config.run_dir, self.restarts, "running")
        say(f"rolling restart {self.restarts}: {len(self.names)} processes, one at a time")
        began = time.monotonic()
        status = rolling_restart.roll(
            self.names, self.stop, self.start, self.health_url, START_TIMEOUT,
            alive=self.alive, host=allowed_host(dict(os.environ)), abort=self.stopping,
            unhealthy=self.leave_empty, progress=self._step,
        )  # fmt: skip
        took = f"{time.monotonic() - began:.1f} s"
        if status == 0:
            say(f"rolling restart {self.restarts} done in {took} ({self.pids()})")
            write_status(self.config.run_dir, self.restarts, "done", f"in {took}: {self.pids()}", self.steps)
        else:
            serving = self.serving()
            message = (
                f"after {took}: {len(serving)} of {len(self.names)} processes serve "
                f"({', '.join(serving) or 'none'}); the steps above say where"
            )
            say(f"rolling restart {self.restarts} failed {message}")
            write_status(self.config.run_dir, self.restarts, "failed", message, self.steps)
        return status == 0

    def supervise(self) -> bool:
        """Start again each daphne that exited by itself (the module's docstring); False when one
        exited more than CRASH_LIMIT times within CRASH_WINDOW seconds: give up."""
        now = time.monotonic()
        for name, child in self.children.items():
            code = child.process.poll()
            if code is None or name in self.due or name in self.empty:
                continue
            recent = [t for t in self.exits[name] if now - t < CRASH_WINDOW] + [now]
            self.exits[name] = recent
            ran = now - child.started
            if len(recent) > CRASH_LIMIT:
                say(f"{name} exited with {code} after {ran:.1f} s, its {len(recent)}th unexpected exit "
                    f"in {CRASH_WINDOW:g} s: giving up")  # fmt: skip
                return False
            delay = RESTART_DELAY * len(recent)
            say(f"{name} (pid {child.process.pid}) exited by itself with {code} after {ran:.1f} s "
                f"(unexpected exit {len(recent)} in {CRASH_WINDOW:g} s): starting it again in {delay:g} s")  # fmt: skip
            self.due[name] = now + delay
        for name, when in list(self.due.items()):
            if now >= when and not self.stopping():
                del self.due[name]
                say(f"{name} started again (pid {self.start(name)})")
        return True

    def stop_all(self) -> None:
        for child in self.children.values():
            child.signal(signal.SIGTERM)

    def wait_all(self) -> None:
        for child in self.children.values():
            child.wait(STOP_TIMEOUT)


def remove_pid_files(run_dir: Path) -> None:
    for path in run_dir.glob("daphne-*.pid"):
        path.unlink(missing_ok=True)
