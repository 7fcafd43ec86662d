"""What the run needs from the machine (Redis) and what it records about it (versions, CPU)."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from fixtures import ROOT, live
from servers import PORTS

logger = logging.getLogger(__name__)

PACKAGES = (
    "django",
    "channels",
    "channels-redis",
    "daphne",
    "uvicorn",
    "fastapi",
    "starlette",
    "websockets",
    "uvloop",
    "orjson",
    "pyjwt",
)


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def ensure_redis(url: str, work: Path) -> str:
    """Return a Redis URL that answers: `url`, or a private `redis-server` (tests/live.py) started
    on a free port of 19100-19999 (no persistence), stopped when the run ends."""
    if _redis_answers(url):
        return url
    if not shutil.which("redis-server"):
        raise RuntimeError(f"Redis does not answer at {url} and redis-server is not installed")
    server = live.RedisServer(work, ports=PORTS)
    server.start()
    atexit.register(server.stop)
    logger.info("started a private redis-server on port %d (%s did not answer)", server.port, url)
    return server.url


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_revision() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def describe(args: argparse.Namespace, elapsed: float) -> dict[str, Any]:
    """The run's context for the results JSON: when, where, which versions, which options."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_s": round(elapsed, 1),
        "mode": "quick" if args.quick else "full",
        "git": _git_revision(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpus": {"server": 0, "loadgen": 1, "fanout_servers": list(args.fanout_cpus)},
        "packages": versions,
        "workloads": args.workloads,
        "servers": args.servers,
        "extra_env": args.env,
        "variants": {v.key: v.env for v in args.variants},
        "redis_url": args.redis_url,
        # Other work on the machine skews absolute figures (ratios hold better): say how busy it was.
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
