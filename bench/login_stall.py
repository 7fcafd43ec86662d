"""Do sign-ins stall the sockets? Request latency on a live daphne while bad logins flood the token API.

One daphne (SQLite, in-memory layer, DEBUG off) from tests/live.py, ``--sockets`` authenticated
sockets each sending requests in a closed loop (a request, its reply, ``--gap`` seconds), first alone for
``--seconds``, then while ``--flood`` clients post wrong passwords to ``POST /api/v1/token/`` back
to back for ``--seconds`` more; one correct sign-in is timed in the middle of the flood. Prints the
p50 / p99 latency of ``ping`` (no database work) and ``list`` (one query) in both phases, the bad
logins answered per second and the correct sign-in's time.

    .venv/bin/python bench/login_stall.py                                  # lockout as configured
    .venv/bin/python bench/login_stall.py --env SESSIONS_LOGIN_FAILURE_LIMIT=1000000  # no lockout

``--spread`` sends each bad login from another address (``X-Forwarded-For``, daphne run with
``--proxy-headers``) and for another, unknown username, like a distributed guessing attack, so that
the per-address and per-account lockouts do not stop it; the correct sign-in comes from 127.0.0.1.
Numbers are for the note on a shared, noisy machine: no thresholds here.
"""

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import live


def post_login(url: str, username: str, password: str, forwarded_for: str | None = None) -> int:
    """POST the credentials; returns the HTTP status."""
    headers = {"Content-Type": "application/json"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(url + "/api/v1/token/", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def pinger(client: live.Client, state: str, until: float, gap: float, out: list[float]) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        await client.ok(state, timeout=30)
        out.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(gap)


async def flooder(url: str, until: float, spread: bool, counter: itertools.count, statuses: list[int]) -> None:
    while time.monotonic() < until:
        n = next(counter)
        username = f"nobody{n}" if spread else "alice"
        address = f"198.51.{n // 250 % 250}.{n % 250 + 1}" if spread else None
        statuses.append(await asyncio.to_thread(post_login, url, username, "wrong-password", address))


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


async def measure(server: live.Daphne, args: argparse.Namespace) -> dict[str, object]:
    tokens = [server.token(name) for name in live.USERS[: args.sockets]]
    async with live.clients() as opened:
        for token in tokens * (args.sockets // len(tokens) + 1):
            if len(opened) == args.sockets:
                break
            opened.append(await live.login(server.ws, token))
        # Half the sockets ping (no database work), half list their sessions (one query in the
        # database thread, where Channels runs ORM calls and Django runs sync views).
        states = ["ping" if index % 2 == 0 else "list" for index in range(len(opened))]
        idle: dict[str, list[float]] = {"ping": [], "list": []}
        until = time.monotonic() + args.seconds
        await asyncio.gather(*(pinger(c, s, until, args.gap, idle[s]) for c, s in zip(opened, states, strict=True)))

        flood: dict[str, list[float]] = {"ping": [], "list": []}
        statuses: list[int] = []
        until = time.monotonic() + args.seconds
        counter = itertools.count()
        tasks = [
            asyncio.ensure_future(flooder(server.http, until, args.spread, counter, statuses))
            for _ in range(args.flood)
        ]
        pings = [
            asyncio.ensure_future(pinger(c, s, until, args.gap, flood[s])) for c, s in zip(opened, states, strict=True)
        ]
        await asyncio.sleep(args.seconds / 3)
        started = time.perf_counter()
        good = await asyncio.to_thread(post_login, server.http, "bob", live.PASSWORD)
        good_seconds = time.perf_counter() - started
        await asyncio.gather(*tasks, *pings)
    latency = {
        f"{state}_{phase}_ms": {
            "p50": round(statistics.median(values[state]), 1),
            "p99": round(percentile(values[state], 99), 1),
            "n": len(values[state]),
        }
        for state in ("ping", "list")
        for phase, values in (("idle", idle), ("flood", flood))
    }
    return {
        **latency,
        "bad_logins_per_s": round(len(statuses) / args.seconds, 1),
        "bad_login_statuses": {status: statuses.count(status) for status in sorted(set(statuses))},
        "correct_sign_in": {"status": good, "seconds": round(good_seconds, 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sockets", type=int, default=10)
    parser.add_argument("--flood", type=int, default=16, help="concurrent bad-login clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between a socket's pings")
    parser.add_argument("--spread", action="store_true", help="each bad login from another address and username")
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the server (repeatable)")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="login-stall-") as folder, live.processes(Path(folder)) as started:
        daphne_args = ("--proxy-headers",) if args.spread else ()
        server = started.daphne(started.sqlite(), args=daphne_args, **settings)
        result = asyncio.run(measure(server, args))
    print(json.dumps({"args": vars(args), **result}, indent=2))


if __name__ == "__main__":
    main()
