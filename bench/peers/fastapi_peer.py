"""Peer: the original design on FastAPI + uvicorn (the stack this project replaces).

Run: python -m uvicorn fastapi_peer:app --app-dir bench/peers --port 19002
Environment: DJANGO_SECRET_KEY (the HS256 signing key), BENCH_SQLITE_PATH (the benchmark database).

One WebSocket route; the first message carries the token; then a `receive_json` / `send_json` loop,
as the original design did. The user is looked up in `auth_user` with the standard library's
`sqlite3` in Starlette's thread pool (`run_in_threadpool`), the usual FastAPI way to call blocking
database code from an async route without an async driver.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import UTC, datetime

import jwt
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DB_PATH = os.environ["BENCH_SQLITE_PATH"]
_local = threading.local()

app = FastAPI()


def get_user(user_id: int) -> dict | None:
    """Return the active user `user_id` as {"id", "username"}, or None. Runs in the thread pool."""
    db = getattr(_local, "db", None)
    if db is None:
        db = _local.db = sqlite3.connect(DB_PATH)
    row = db.execute("SELECT id, username FROM auth_user WHERE id = ? AND is_active", (user_id,)).fetchone()
    return {"id": row[0], "username": row[1]} if row else None


def iso(dt: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


@app.websocket("/api/v1/socket")
async def socket(websocket: WebSocket) -> None:
    """Serve one interactive session: token handshake, then the request loop."""
    await websocket.accept()
    try:
        first = await websocket.receive_json()
        claims = jwt.decode(first["token"], SECRET_KEY, algorithms=["HS256"])
        if claims.get("token_type") != "access":
            raise ValueError("not an access token")
        user = await run_in_threadpool(get_user, int(claims["user_id"]))
        if user is None:
            raise ValueError("unknown user")
    except WebSocketDisconnect:
        return
    except (ValueError, KeyError, TypeError, jwt.PyJWTError):
        error = {"state": "error", "code": "not_authenticated", "error": "Invalid token."}
        await websocket.send_json(error)
        await websocket.close(4401)
        return
    expires = datetime.fromtimestamp(claims["exp"], UTC)
    data = {"user": user, "protocol": 1, "token_expires_at": iso(expires)}
    await websocket.send_json({"state": "initialised", "data": data})
    try:
        while True:
            message = await websocket.receive_json()
            if message.get("state") == "ping":
                data = {"server_time": iso(datetime.now(UTC))}
                reply = {"state": "ping", "id": message.get("id"), "data": data}
            else:
                reply = {"state": "error", "code": "unknown_state", "error": "Unknown state."}
            await websocket.send_json(reply)
    except WebSocketDisconnect:
        pass
