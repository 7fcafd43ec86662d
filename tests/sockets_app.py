"""A bare ASGI WebSocket app for tests/test_sockets.py, served by daphne and uvicorn in subprocesses.

No Django. Each connection records what it sees as JSON lines in ``$SOCKETS_APP_LOG_DIR/<log>.jsonl``,
``<log>`` from the query string (``/?log=name``), so one server serves many tests. Text frames:

- ``flood N``: send N binary frames of ``FRAME`` bytes (in a task: the app keeps reading meanwhile),
  recording ``socket_buffer(send).buffered()`` after each (``sent``), and ``blocked`` when a send has
  not returned within ``BLOCKED_AFTER`` seconds (uvicorn's backpressure); then ``flooded``.
- ``abort``: ``socket_buffer(send).abort()``.
- ``register-producer``: try Twisted's ``registerProducer`` on daphne's transport; records the error.
- ``shared TEXT``: ``socket_buffer(send).send_shared`` of ``TEXT`` twice, the same ``str`` (a push's
  frame, framed once on daphne); records what each returned (``shared``).

Records: ``connect`` (which buffer, the server's RSS), ``sent``, ``blocked``, ``flooded`` and ``abort``
(RSS and malloc's heap), ``flood-error`` (a send raised), ``register-producer``, ``disconnect`` (its code).
"""

import asyncio
import ctypes
import json
import os
import resource
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sessions_app.sockets import socket_buffer

FRAME = bytes(64 * 1024)
BLOCKED_AFTER = 0.3  # seconds
PAGE = resource.getpagesize()


def rss() -> int:
    """This process's resident set size in bytes (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap() -> int | None:
    """Bytes allocated by malloc and not yet freed (glibc's ``mallinfo2``), or None elsewhere.

    Unlike the RSS, it drops as soon as memory is freed, whether or not malloc returns it to the OS.
    """
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return info.uordblks + info.hblkhd


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    name = parse_qs(scope["query_string"].decode())["log"][0]
    path = Path(os.environ["SOCKETS_APP_LOG_DIR"]) / f"{name}.jsonl"

    def record(event: str, **fields: Any) -> None:
        with path.open("a") as log:
            log.write(json.dumps({"event": event, **fields}) + "\n")

    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    buffer = socket_buffer(send)
    owner = getattr(send, "__self__", None)
    record("connect", buffer=type(buffer).__name__ if buffer else None, owner=type(owner).__qualname__, rss=rss())
    tasks = set()

    async def flood(count: int) -> None:
        try:
            for i in range(count):
                sending = asyncio.ensure_future(send({"type": "websocket.send", "bytes": FRAME}))
                done, _ = await asyncio.wait([sending], timeout=BLOCKED_AFTER)
                if not done:
                    record("blocked", i=i, buffered=buffer.buffered())
                await sending
                record("sent", i=i, buffered=buffer.buffered())
        except OSError as error:  # uvicorn's ClientDisconnected
            record("flood-error", error=type(error).__name__)
        else:
            record("flooded", count=count, buffered=buffer.buffered(), rss=rss(), heap=heap())

    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record("disconnect", code=message.get("code"))
            break
        command, *args = message["text"].split()
        if command == "flood":
            task = asyncio.create_task(flood(int(args[0])))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif command == "abort":
            buffer.abort()
            record("abort", buffered=buffer.buffered(), rss=rss(), heap=heap())
        elif command == "shared":
            text = " ".join(args)
            record("shared", sent=[buffer.send_shared(text), buffer.send_shared(text)])
        elif command == "register-producer":
            try:
                send.args[0].transport.registerProducer(object(), True)
            except RuntimeError as error:
                record("register-producer", error=type(error).__name__, message=str(error))
    for task in tasks:  # a flood still waiting on uvicorn's send
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
