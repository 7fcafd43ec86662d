"""The load generator: a real `websockets` client, loopback only, bounded in count and time.

Run by bench/run.py pinned to its own CPU (`taskset -c 1`), with one job as JSON on stdin; prints the
job's result as JSON on stdout. A job sets up its connections, warms up, then measures `repeats`
consecutive windows of `duration` seconds, sampling the server's CPU time from /proc around each
window (see workloads.py for the jobs and their fields).

    echo '{"job": "probe", "urls": ["ws://127.0.0.1:19001/api/v1/socket"], "tokens": ["..."]}' \\
        | python bench/loadgen.py
"""

from __future__ import annotations

import asyncio
import itertools
import json
import resource
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import orjson
from metrics import cpu_seconds, percentile, self_cpu_seconds
from websockets.asyncio.client import ClientConnection, connect

# Keep the client cheap and the servers comparable: no permessage-deflate (not every server
# negotiates it), no keepalive pings during the measured windows.
CONNECT_OPTIONS: dict[str, Any] = {
    "compression": None,
    "ping_interval": None,
    "open_timeout": 30,
    "close_timeout": 5,
    "max_size": 2**22,
}
REPLY_TIMEOUT = 30.0
# Hard cap on any job, whatever its parameters say.
JOB_TIMEOUT = 600.0


class ProtocolError(Exception):
    """The server answered an error, or something the protocol does not allow at this point."""

    def __init__(self, message: str, reply: dict | None = None) -> None:
        super().__init__(message)
        self.reply = reply or {}


def check_loopback(url: str) -> None:
    """Refuse any target that is not on the loopback interface."""
    host = urlsplit(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise SystemExit(f"loadgen: refusing non-loopback target {url!r}")


class Client:
    """One authenticated connection; `request` sends a state and waits for its reply."""

    _ids = itertools.count(1)

    def __init__(self, ws: ClientConnection, user: dict) -> None:
        self.ws = ws
        self.user = user

    @classmethod
    async def open(cls, url: str, token: str) -> Client:
        """Connect to `url` and complete the token handshake."""
        # A browser's Origin: Channels' AllowedHostsOriginValidator refuses a handshake without one.
        origin = urlsplit(url)._replace(scheme="http", path="").geturl()
        ws = await connect(url, origin=origin, **CONNECT_OPTIONS)
        try:
            await ws.send(orjson.dumps({"token": token}).decode())
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT))
            if reply.get("state") != "initialised":
                raise ProtocolError(f"handshake refused: {reply}", reply)
        except BaseException:
            await ws.close()
            raise
        return cls(ws, reply["data"]["user"])

    async def request(self, state: str, data: dict | None = None) -> dict:
        """Send `state` with `data` and return the reply's data; pushes received meanwhile are
        skipped. Raises ProtocolError on an error reply."""
        rid = next(self._ids)
        message = {"state": state, "data": data or {}, "id": rid}
        await self.ws.send(orjson.dumps(message).decode())
        while True:
            reply = orjson.loads(await asyncio.wait_for(self.ws.recv(), REPLY_TIMEOUT))
            if reply.get("id") == rid:
                if reply.get("state") != state:
                    raise ProtocolError(f"{state} failed: {reply}", reply)
                return reply.get("data", {})

    async def close(self) -> None:
        """Close the connection, ignoring a peer that already went away."""
        try:
            await self.ws.close()
        except Exception:  # noqa: BLE001 - closing a dead socket is not a benchmark failure
            pass


async def open_many(url_for: Any, token_for: Any, count: int, concurrency: int = 50) -> list[Client]:
    """Open and authenticate `count` connections, `concurrency` at a time; `url_for(i)` and
    `token_for(i)` pick the target and token of connection i."""
    clients: list[Client | None] = [None] * count
    indexes = iter(range(count))

    async def worker() -> None:
        for i in indexes:
            clients[i] = await Client.open(url_for(i), token_for(i))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return [c for c in clients if c is not None]


async def close_all(clients: list[Client]) -> None:
    """Close every client, at most 200 at a time."""
    for start in range(0, len(clients), 200):
        await asyncio.gather(*(c.close() for c in clients[start : start + 200]))


async def wait_idle(pids: list[int], limit: float = 10.0) -> None:
    """Wait until the server uses under 5% of a CPU over 0.25 s (at most `limit` seconds)."""
    deadline = time.perf_counter() + limit
    last = cpu_seconds(pids)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
        now = cpu_seconds(pids)
        if now - last < 0.0125:
            return
        last = now


class Windows:
    """Consecutive measured windows: loops append samples to `bucket`, the controller swaps it.

    A sample is a latency in seconds; a window's rate is its sample count over its length.
    """

    def __init__(self, server_pids: list[int]) -> None:
        self.server_pids = server_pids
        self.bucket: list[float] = []
        self.errors = 0
        self.stop = False

    async def run(self, warmup: float, duration: float, repeats: int) -> list[dict]:
        """Warm up, then measure `repeats` windows of `duration` seconds; return their figures."""
        await asyncio.sleep(warmup)
        results = []
        for _ in range(repeats):
            self.bucket, self.errors = [], 0
            cpu0, own0, t0 = cpu_seconds(self.server_pids), self_cpu_seconds(), time.perf_counter()
            await asyncio.sleep(duration)
            bucket, errors = self.bucket, self.errors
            cpu1, own1, t1 = cpu_seconds(self.server_pids), self_cpu_seconds(), time.perf_counter()
            self.bucket = []
            results.append(summarise(bucket, errors, t1 - t0, cpu1 - cpu0, own1 - own0))
        self.stop = True
        return results


def summarise(samples: list[float], errors: int, wall: float, cpu: float, own: float) -> dict:
    """Figures of one window: rate, latency percentiles (ms), server CPU per op (µs)."""
    count = len(samples)
    return {
        "count": count,
        "errors": errors,
        "wall_s": round(wall, 3),
        "rate": count / wall if wall else 0.0,
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "cpu_us_per_op": cpu / count * 1e6 if count else float("nan"),
        "server_cpu_util": cpu / wall if wall else 0.0,
        "client_cpu_util": own / wall if wall else 0.0,
    }


def raise_fd_limit() -> None:
    """Raise this process's open-file limit to its hard limit (5,000+ sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    """Read one job from stdin, run it, print its result as JSON."""
    from workloads import JOBS

    job = json.load(sys.stdin)
    for url in job.get("urls", []):
        check_loopback(url)
    raise_fd_limit()
    runner = JOBS[job["job"]]

    async def bounded() -> dict:
        return await asyncio.wait_for(runner(job), min(job.get("timeout", 300), JOB_TIMEOUT))

    try:
        import uvloop
    except ImportError:
        result = asyncio.run(bounded())
    else:
        result = uvloop.run(bounded())
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
