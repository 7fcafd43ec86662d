"""The servers under test: what each runs; tests/live.py's launcher starts (pinned with
`taskset`) and stops them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fixtures import PEERS, PYTHON, live

logger = logging.getLogger(__name__)

PORTS = range(19100, 20000)


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
        # Our consumer with every push sent through daphne's own send path (issue 16): separates
        # what framing a push once for all members (autobahn's prepared messages) gains. Fan-out only.
        ServerSpec(
            "ours-daphne+stocksend",
            "ours (daphne) [stock send]",
            daphne("project.asgi:application"),
            ours=True,
            env={"DAPHNE_PREPARED_PUSHES": "0"},
        ),
        # granian (issue 16 target 5): Rust HTTP and WebSocket, the ASGI interface without lifespan
        # (Django's handler has none), one worker, its default loop (uvloop when installed); ping,
        # connect and memory only (bench/README.md, "A third server"). Needs `pip install granian`.
        ServerSpec(
            "ours-granian",
            "ours (granian)",
            (
                PYTHON,
                "-m",
                "granian",
                "--interface",
                "asginl",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--workers",
                "1",
                "--log-level",
                "warning",
                "--no-access-log",
                "project.asgi:application",
            ),
            ours=True,
        ),
        ServerSpec(
            "ours-uvicorn", "ours (uvicorn)", uvicorn("project.asgi:application", "--lifespan", "off"), ours=True
        ),
    )
}


class Running(live.Server):
    """A server of the comparison, started with the launcher of the tests (tests/live.py) on a
    port of 19100-19999, pinned to `cpu`, its output in `<key>-<port>.log` in `logs`."""

    def __init__(self, spec: ServerSpec, env: dict[str, str], logs: Path, cpu: str = "0") -> None:
        super().__init__(logs, {**env, **spec.env}, spec.argv, name=spec.key, ports=PORTS, cpu=cpu, start_timeout=60)
        self.spec = spec


def spawn(spec: ServerSpec, env: dict[str, str], logs: Path, cpu: str = "0") -> Running:
    """Start `spec` pinned to `cpu` with `env`, without waiting for it (then `Running.wait_ready`)."""
    run = Running(spec, env, logs, cpu)
    run.spawn()
    return run


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
            run.wait_ready()
            logger.debug("started %s on port %d (pid %d)", spec.label, run.port, run.pid)
        yield started
    finally:
        for run in started:
            run.stop()
