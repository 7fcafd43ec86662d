"""``GET /healthz``: is this process able to serve sessions (database and channel layer)?

The database is pinged from the thread every connection's database calls share
(``executors.in_database_thread``), not from the request's own thread: a process whose database
thread is stuck (a long call, a lock) serves no socket, and answers 503.
"""

import asyncio
import logging
import time
from typing import Any

from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

from . import executors

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0  # seconds per check


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


# The ping waiting in (or running on) the database thread, per event loop. Health checks that come
# while one is pending wait for the same ping instead of queueing more behind a stuck thread.
_pending: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


async def _check_database() -> None:
    loop = asyncio.get_running_loop()
    ping = _pending.get(loop)
    if ping is None or ping.done():
        ping = _pending[loop] = loop.create_task(executors.in_database_thread(_database_ping))
        ping.add_done_callback(_forget)
    # Shielded: a check that times out leaves the ping queued for the next check, not cancelled.
    await asyncio.shield(ping)


def _forget(ping: asyncio.Task[None]) -> None:
    """Called when a ping finishes: retrieve its outcome (no "never retrieved" warning) and drop it."""
    if not ping.cancelled():
        ping.exception()
    if _pending.get(ping.get_loop()) is ping:
        del _pending[ping.get_loop()]


async def _check_channel_layer() -> None:
    """A message through the layer and back, on a channel of this process (FanoutChannelLayer:
    through the inner layer to the process channel's reader, sessions_app.layers)."""
    layer = get_channel_layer()
    if hasattr(layer, "ping"):
        await layer.ping()
        return
    # The default prefix: channels_redis reads all of a layer instance's channels through one
    # list; a channel of another prefix is never read while a consumer holds the receive lock.
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "healthz.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "healthz.ping":
        raise RuntimeError(f"unexpected message {message.get('type')!r}")


async def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure is reported as this component's state
        logger.warning("health check %s failed: %s", check.__name__, type(exc).__name__)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 ``{"status": "ok", "database": {...}, "channel_layer": {...}}`` when both answer, else 503.

    Each component reports ``{"ok": true, "ms": float}`` or ``{"ok": false, "error": class name}``;
    each check gives up after 2 seconds (``TimeoutError`` when the shared database thread did not
    get to the ping).
    """
    database, layer = await asyncio.gather(_timed(_check_database), _timed(_check_channel_layer))
    ok = database["ok"] and layer["ok"]
    body = {"status": "ok" if ok else "unavailable", "database": database, "channel_layer": layer}
    return JsonResponse(body, status=200 if ok else 503)
