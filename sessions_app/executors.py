"""Where synchronous work runs: the database thread every connection shares, and the patch workers.

Channels runs every consumer's ORM calls in one thread per process (asgiref's thread-sensitive
executor: ``database_sync_to_async`` outside a request), so whatever one call does there, every
other connection's handshake and request waits for. Two helpers keep that thread honest:

- ``in_database_thread`` runs a function in that same thread even from an HTTP request (Django
  gives each request a thread of its own, ``ThreadSensitiveContext``): ``/healthz`` pings the
  database through it, so a process whose database thread is stuck answers 503.
- ``in_patch_worker`` runs document work (decoding, applying and encoding a large patched
  document) in a pool of ``SESSIONS_PATCH_WORKERS`` threads instead, so at most that many patches
  are computed at once and none of them holds the database thread.
"""

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import AsyncToSync, SyncToAsync
from channels.db import database_sync_to_async

from .conf import app_settings

T = TypeVar("T")

# Nodes of work (sessions_app/work.py) a patch may do in the database thread itself, on a document
# of at most SESSIONS_PATCH_INLINE_BYTES: about 5 ms of walking. A patch that needs more is
# computed again from the start in a patch worker (what it did here is thrown away).
INLINE_WORK = 16_384

_workers: ThreadPoolExecutor | None = None
_workers_size = 0


async def in_database_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` in the database thread the process's sockets share; returns its result.

    ``database_sync_to_async`` picks the request's own thread under Django's ASGI handler: the
    thread of the request's ``ThreadSensitiveContext``, or, below a synchronous middleware (the
    rest of the chain then runs in ``async_to_sync`` from that thread), that thread again through
    ``AsyncToSync.executors.current``. Without either it picks the shared thread, so in a request
    the call is made in a copy of the current context that has neither (what
    ``ThreadSensitiveContext`` does itself when asgiref is given an executor). Outside a
    ``ThreadSensitiveContext`` (a socket, Django's test client) the current path already leads to
    the shared thread, possibly through a synchronous caller running there, and is kept.
    Cancelling the caller leaves a call that has started to finish in that thread (as
    ``database_sync_to_async`` does).
    """
    context = contextvars.copy_context()
    if SyncToAsync.thread_sensitive_context.get(None) is not None:
        context.run(_leave_request_threads)
    call = database_sync_to_async(func)(*args, **kwargs)
    return await asyncio.get_running_loop().create_task(call, context=context)


def _leave_request_threads() -> None:
    SyncToAsync.thread_sensitive_context.set(None)  # type: ignore[arg-type]
    AsyncToSync.executors.current = None  # asgiref's Local: set in this context only


def _pool() -> ThreadPoolExecutor:
    global _workers, _workers_size
    size = app_settings.PATCH_WORKERS
    if _workers is None or _workers_size != size:  # a new size (override_settings in tests)
        if _workers is not None:
            _workers.shutdown(wait=False)
        _workers = ThreadPoolExecutor(max_workers=size, thread_name_prefix="patch-worker")
        _workers_size = size
    return _workers


async def in_patch_worker(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` in one of the ``SESSIONS_PATCH_WORKERS`` patch threads; returns its result.

    Calls beyond that many wait their turn in the pool's queue (each connection has at most one
    request in progress, so the queue is bounded by the connections). ``func`` must not touch the
    database: the database thread is the point of not being there. A caller that is cancelled
    (its connection closed) leaves a started call to finish; its result is dropped.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(func, *args, **kwargs))
