"""Peer: a bare ASGI application (no Django, no Channels) speaking the handshake and `ping`.

Served by daphne it is the floor of what any application costs on daphne: the server's own work per
handshake and per message (Twisted, autobahn, daphne's scope and queues) plus the least application
work possible. Our server's figures on daphne are read against it.

Run: python -m daphne -b 127.0.0.1 -p 19001 asgi_peer:application   (with bench/peers on PYTHONPATH)
Environment: DJANGO_SECRET_KEY (the HS256 signing key), BENCH_SQLITE_PATH (the benchmark database).
The token check and user lookup are the websockets peer's (PyJWT, then `auth_user` through the
standard library's sqlite3 in a worker thread).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import jwt
from websockets_peer import SECRET_KEY, iso, lookup_user


async def authenticate(text: str | None) -> dict | None:
    """Check the first frame's access token; return the `initialised` data, or None."""
    try:
        claims = jwt.decode(json.loads(text or "")["token"], SECRET_KEY, algorithms=["HS256"])
        if claims.get("token_type") != "access":
            return None
        user = await asyncio.to_thread(lookup_user, int(claims["user_id"]))
    except (ValueError, KeyError, TypeError, jwt.PyJWTError):
        return None
    if user is None:
        return None
    return {"user": {"id": user[0], "username": user[1]}, "protocol": 1, "token_expires_at": iso(claims["exp"])}


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """One WebSocket connection: accept, the token handshake, then `ping` replies."""
    if scope["type"] != "websocket":
        return
    authenticated = False
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.disconnect":
            return
        elif not authenticated:
            data = await authenticate(message.get("text"))
            if data is None:
                error = {"state": "error", "code": "not_authenticated", "error": "Invalid token."}
                await send({"type": "websocket.send", "text": json.dumps(error)})
                await send({"type": "websocket.close", "code": 4401})
                return
            authenticated = True
            await send({"type": "websocket.send", "text": json.dumps({"state": "initialised", "data": data})})
        else:
            msg = json.loads(message.get("text") or "{}")
            if msg.get("state") == "ping":
                now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                reply = {"state": "ping", "id": msg.get("id"), "data": {"server_time": now}}
            else:
                reply = {"state": "error", "code": "unknown_state", "error": "Unknown state."}
            await send({"type": "websocket.send", "text": json.dumps(reply)})
