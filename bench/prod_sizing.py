"""Sizing of the production layout (docs/deployment.md, "Sizing"): memory and connections per
process with N idle authenticated WebSockets through nginx.

Starts scripts/prod.py as an operator would, on DATABASE_URL and REDIS_URL from the environment
(the database is migrated and gets one user, ``sizing``), opens ``--connections`` sockets through
nginx (least_conn spreads them over the daphnes), and reports each process's resident memory
before and with them, nginx's, the PostgreSQL backends and Redis clients the layout holds; then
keeps them idle for ``--hold`` seconds (longer than nginx's proxy_read_timeout, 75 s) and checks
that every one still answers a ``ping``.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/interactive_sizing \\
    REDIS_URL=redis://127.0.0.1:6379/10 .venv/bin/python bench/prod_sizing.py --connections 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis
from loadgen import Client, close_all, open_many, wait_idle
from metrics import rss_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import live

ROOT = Path(__file__).resolve().parents[1]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def kib(pids: list[int]) -> int:
    return rss_bytes(pids) // 1024


def pg_backends(database_url: str) -> int:
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(live.pg_admin_url(database_url), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def redis_clients(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    try:
        return sum(1 for entry in client.client_list() if int(entry.get("db", -1)) == db) - 1  # not this one
    finally:
        client.close()


async def measure(args: argparse.Namespace) -> dict:
    database_url, redis_url = os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
    live.prepare_database(database_url, users=["sizing"])
    workdir = Path(tempfile.mkdtemp(prefix="prod-sizing-"))
    port = live.free_port()
    env = live.base_env(
        database_url,
        redis_url,
        secret_key=secrets.token_urlsafe(50),
        PROCESSES=args.processes,
        PROD_LISTEN=f"127.0.0.1:{port}",
        PROD_RUN_DIR=workdir / "run",
        NGINX_WORKERS=1,
        SESSIONS_MAX_CONNECTIONS_PER_USER=args.connections + 10,
    )
    log_path = workdir / "prod.log"
    with open(log_path, "wb") as log:
        script = subprocess.Popen(
            [sys.executable, "scripts/prod.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        live.wait_until(lambda: "prod | ready:" in log_path.read_text(), 180, "the layout")
        ready = next(line for line in log_path.read_text().splitlines() if line.startswith("prod | ready:"))
        nginx, *daphnes = (int(pid) for pid in re.findall(r"pid (\d+)", ready))
        base = f"http://127.0.0.1:{port}"
        token = live.http_json(base + "/api/v1/token/", {"username": "sizing", "password": live.PASSWORD})[1]["access"]
        url = f"ws://127.0.0.1:{port}{live.SOCKET_PATH}"
        # Warm each process (code paths, pools) with a few connections, then measure it idle.
        warm = await open_many(lambda i: url, lambda i: token, 4 * len(daphnes))
        await close_all(warm)
        await wait_idle(daphnes)
        time.sleep(1)
        before = {pid: kib([pid]) for pid in daphnes}
        nginx_before = kib([nginx, *children(nginx)])
        started = time.monotonic()
        clients = await open_many(lambda i: url, lambda i: token, args.connections)
        opened_s = time.monotonic() - started
        await wait_idle(daphnes)
        time.sleep(2)
        after = {pid: kib([pid]) for pid in daphnes}
        nginx_after = kib([nginx, *children(nginx)])
        per_process = {}
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT server_id, count(*) FROM sessions_app_connection GROUP BY server_id").fetchall()
        for server_id, count in rows:
            pid = int(server_id.split("-")[-2])
            per_process[pid] = {
                "connections": count,
                "rss_idle_kib": before.get(pid),
                "rss_connected_kib": after.get(pid),
                "kib_per_connection": round((after[pid] - before[pid]) / count, 1) if pid in after else None,
            }
        report = {
            "processes": args.processes,
            "connections": len(clients),
            "open_and_authenticate_s": round(opened_s, 1),
            "daphnes": per_process,
            "nginx_rss_kib": {"idle": nginx_before, "connected": nginx_after},
            "nginx_kib_per_connection": round((nginx_after - nginx_before) / len(clients), 1),
            "postgres_backends": pg_backends(database_url),
            "redis_clients": redis_clients(redis_url),
        }
        await asyncio.sleep(args.hold)

        async def ping(client: Client) -> bool:
            try:
                await client.request("ping")
            except Exception:  # noqa: BLE001 - counted
                return False
            return True

        answered = await asyncio.gather(*(ping(client) for client in clients))
        report[f"answered_ping_after_{args.hold}s_idle"] = sum(answered)
        await close_all(clients)
        return report
    finally:
        script.send_signal(signal.SIGTERM)
        script.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--hold", type=int, default=90, help="seconds idle before the final ping")
    report = asyncio.run(measure(parser.parse_args()))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
