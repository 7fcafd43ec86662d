"""Peer: a bare `websockets` asyncio server speaking the handshake and `ping` (near-limit reference).

Run: python bench/peers/websockets_peer.py --port 19001
Environment: DJANGO_SECRET_KEY (the HS256 signing key), BENCH_SQLITE_PATH (the benchmark database).

The user lookup is done: the token's `user_id` is looked up in `auth_user` with the standard library's
`sqlite3`, in a worker thread (`asyncio.to_thread`), one connection per thread. That is what a careful
hand-written asyncio server would do, and it keeps the connect + authenticate workload comparable with
the other stacks, which all query the same table. The event loop is uvloop when installed, as uvicorn
uses it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import threading
from datetime import UTC, datetime

import jwt
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DB_PATH = os.environ["BENCH_SQLITE_PATH"]
_local = threading.local()


def lookup_user(user_id: int) -> tuple[int, str] | None:
    """Return (id, username) of the active user `user_id`, or None. Runs in a worker thread."""
    db = getattr(_local, "db", None)
    if db is None:
        db = _local.db = sqlite3.connect(DB_PATH)
    row = db.execute("SELECT id, username FROM auth_user WHERE id = ? AND is_active", (user_id,)).fetchone()
    return (row[0], row[1]) if row else None


def iso(ts: float) -> str:
    """Format a POSIX timestamp as ISO 8601 UTC."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def check_token(text: str) -> dict | None:
    """Check the first frame's access token; return the `initialised` data, or None. Shared with
    the bare ASGI peer."""
    try:
        claims = jwt.decode(json.loads(text)["token"], SECRET_KEY, algorithms=["HS256"])
        if claims.get("token_type") != "access":
            return None
        user = await asyncio.to_thread(lookup_user, int(claims["user_id"]))
    except (ValueError, KeyError, TypeError, jwt.PyJWTError):
        return None
    if user is None:
        return None
    return {
        "user": {"id": user[0], "username": user[1]},
        "protocol": 1,
        "token_expires_at": iso(claims["exp"]),
    }


async def authenticate(ws: ServerConnection) -> dict | None:
    """Read the first frame, check the access token and return the `initialised` data, or None."""
    return await check_token(await ws.recv())


async def handler(ws: ServerConnection) -> None:
    """Serve one connection: the token handshake, then a `ping` loop."""
    data = await authenticate(ws)
    if data is None:
        error = {"state": "error", "code": "not_authenticated", "error": "Invalid token."}
        await ws.send(json.dumps(error))
        await ws.close(4401)
        return
    await ws.send(json.dumps({"state": "initialised", "data": data}))
    try:
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("state") == "ping":
                now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                reply = {"state": "ping", "id": msg.get("id"), "data": {"server_time": now}}
            else:
                reply = {"state": "error", "code": "unknown_state", "error": "Unknown state."}
            await ws.send(json.dumps(reply))
    except ConnectionClosed:
        pass


async def main(port: int) -> None:
    """Serve on 127.0.0.1:`port` until killed."""
    async with serve(handler, "127.0.0.1", port) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args.port))
    else:
        uvloop.run(main(args.port))
