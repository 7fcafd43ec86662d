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

import json
from datetime import UTC, datetime
from typing import Any

from websockets_peer import check_token


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
            data = await check_token(message.get("text") or "")
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
