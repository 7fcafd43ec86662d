"""The servers under test: how each is started (pinned with `taskset`), probed and stopped."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fixtures import PEERS, PYTHON, ROOT

logger = logging.getLogger(__name__)

PORTS = range(19100, 20000)
_next_port = iter(PORTS)


@dataclass(frozen=True)
class ServerSpec:
    """One server of the comparison: `argv` is the command, `{port}` filled in at start."""

    key: str
    label: str
    argv: tuple[str, ...]
    ours: bool = False
    env: dict[str, str] = field(default_factory=dict)


PEER_ENV = {"PYTHONPATH": str(PEERS), "DJANGO_SETTINGS_MODULE": "channels_peer.settings"}


def daphne(app: str) -> tuple[str, ...]:
    """daphne serving `app` on 127.0.0.1:{port}, warnings and errors only, no access log."""
    return (PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "-v", "0", app)


def uvicorn(app: str, *options: str) -> tuple[str, ...]:
    """uvicorn serving `app` on 127.0.0.1:{port} with its defaults (uvloop, httptools and the
    websockets sans-I/O protocol when installed), warnings and errors only, no access log."""
    quiet = ("--log-level", "warning", "--no-access-log")
    return (PYTHON, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}", *quiet, *options)


# Django's ASGI handler has no lifespan support: `--lifespan off` spares uvicorn's probe and warning.
SERVERS: dict[str, ServerSpec] = {
    spec.key: spec
    for spec in (
        ServerSpec("websockets", "websockets peer", (PYTHON, str(PEERS / "websockets_peer.py"), "--port", "{port}")),
        ServerSpec("fastapi", "FastAPI peer (uvicorn)", uvicorn("fastapi_peer:app", "--app-dir", str(PEERS))),
        ServerSpec(
            "asgi-daphne", "bare ASGI peer (daphne)", daphne("asgi_peer:application"), env={"PYTHONPATH": str(PEERS)}
        ),
        ServerSpec("channels", "Channels peer (daphne)", daphne("channels_peer.asgi:application"), env=PEER_ENV),
        ServerSpec(
            "channels-uvicorn",
            "Channels peer (uvicorn)",
            uvicorn("channels_peer.asgi:application", "--app-dir", str(PEERS), "--lifespan", "off"),
            env=PEER_ENV,
        ),
        ServerSpec("ours-daphne", "ours (daphne)", daphne("project.asgi:application"), ours=True),
        # Our consumer on channels_redis' own layer instead of sessions_app.layers.FanoutChannelLayer
        # (issue 10): separates what the layer gains from what the consumer gains. Fan-out only.
        ServerSpec(
            "ours-daphne+stocklayer",
            "ours (daphne) [stock layer]",
            daphne("project.asgi:application"),
            ours=True,
            env={"CHANNEL_LAYER_FANOUT": "0"},
        ),
        ServerSpec(
            "ours-uvicorn", "ours (uvicorn)", uvicorn("project.asgi:application", "--lifespan", "off"), ours=True
        ),
    )
}


@dataclass
class Running:
    """A started server process."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        """The WebSocket endpoint of the protocol."""
        return f"ws://127.0.0.1:{self.port}/api/v1/socket"

    @property
    def pid(self) -> int:
        """The server's pid (taskset execs the server, so this is the server itself)."""
        return self.process.pid


def free_port() -> int:
    """Next port of 19100-19999 that nothing listens on."""
    for port in _next_port:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port left in 19100-19999")


def _wait_listening(run: Running, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", run.port), 0.2):
            return
        time.sleep(0.1)
    tail = run.log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{run.spec.label} did not listen on {run.port}:\n{tail}")


def start(spec: ServerSpec, env: dict[str, str], logs: Path, cpu: str = "0") -> Running:
    """Start `spec` pinned to `cpu` with `env`, and wait until it listens."""
    run = spawn(spec, env, logs, cpu)
    wait_ready(run)
    return run


def wait_ready(run: Running) -> None:
    """Wait until `run` listens; stop it and raise with its log's tail if it does not."""
    try:
        _wait_listening(run)
    except BaseException:
        stop(run)
        raise
    logger.debug("started %s on port %d (pid %d)", run.spec.label, run.port, run.pid)


def spawn(spec: ServerSpec, env: dict[str, str], logs: Path, cpu: str = "0") -> Running:
    """Start `spec` pinned to `cpu` with `env`, without waiting for it (see `wait_ready`)."""
    port = free_port()
    argv = ["taskset", "-c", cpu, *(a.replace("{port}", str(port)) for a in spec.argv)]
    log = logs / f"{spec.key}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**env, **spec.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Running(spec, port, process, log)


def stop(run: Running) -> None:
    """Stop the server (its own process group, by id): SIGTERM, then SIGKILL after 10 s."""
    if run.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.process.pid, signal.SIGTERM)
        try:
            run.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait(10)


@contextlib.contextmanager
def running(
    spec: ServerSpec, env: dict[str, str], logs: Path, cpus: tuple[str, ...] = ("0",)
) -> Iterator[list[Running]]:
    """Start one process of `spec` per entry of `cpus`, each pinned to it; stop them on exit."""
    started: list[Running] = []
    try:
        for cpu in cpus:
            started.append(spawn(spec, env, logs, cpu))
        for run in started:
            wait_ready(run)
        yield started
    finally:
        for run in started:
            stop(run)
