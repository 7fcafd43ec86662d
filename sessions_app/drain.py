"""Graceful drain on SIGTERM: stop accepting, finish the requests in flight, close with 1012, exit.

What a process does when it is told to stop (a deploy, a rolling restart: scripts/rolling_restart.py):

1. **Stop accepting.** The server's listening sockets are closed, so a new connection is refused
   and a proxy or a reconnecting client tries another process at once. Under daphne, Twisted's
   listening ports (``IListeningPort.stopListening`` of each one in ``reactor.getReaders()``);
   under uvicorn, its ``asyncio.Server`` objects (``uvicorn.Server.servers``, the owner of the
   SIGTERM handler we replace), which is what uvicorn's own shutdown does first.
2. **Drain each socket.** Every open connection of this process is told to close
   (``OrderedConsumer.close_when_idle``): a connection idle between requests sends close 1012 (service
   restart, ``protocol.CLOSE_SERVICE_RESTART``) at once; one handling a request (a patch half
   committed, a join, the handshake) sends that request's reply or error first, then 1012. Frames
   that arrive after that are not handled (the socket is closing), so a request without a reply
   was not carried out: the client re-sends it after it re-joined (docs/client.md).
3. **Wait**, at most ``SESSIONS_DRAIN_TIMEOUT`` seconds, for the clients to answer the close
   (each connection's cleanup removes its presence row and tells the others), then stop the
   heartbeat and delete this process's ServerProcess row (with any connection row left), so
   presence is right at once and not after the TTL.
4. **Exit** through the server's own SIGTERM handling, which we saved when we replaced it:
   Twisted's ``reactor.stop`` (daphne cancels any application still running, closing its socket)
   or uvicorn's ``handle_exit`` (its shutdown sends 1012 to a socket still open).

The handler is installed on the first connection (``process.ensure_running``), on the event loop's
thread, after the server installed its own (daphne's reactor at start-up, uvicorn in
``capture_signals``): before any connection there is nothing to drain, and the server's own SIGTERM
handling is kept. A second SIGTERM during a drain does nothing more; SIGINT (Ctrl-C) is left to the
server. What this bypasses of daphne and Channels: docs/channels.md, "Differences from Channels".
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import signal
import sys
import threading
import weakref
from typing import Any, Protocol

from channels.db import database_sync_to_async

from . import protocol
from .conf import app_settings

logger = logging.getLogger(__name__)


class Drainable(Protocol):
    """What this module needs of a connection (SessionConsumer)."""

    def close_when_idle(self, code: int) -> None:
        """Close with ``code`` after the reply to the request being handled, if any; at once otherwise."""
        ...


# The modules of the objects whose bound method is the server's SIGTERM handler.
SERVERS = ("twisted.internet.", "uvicorn.")

_open: weakref.WeakSet[Drainable] = weakref.WeakSet()
_installed_on: asyncio.AbstractEventLoop | None = None
_draining: asyncio.Task[None] | None = None
_emptied: asyncio.Event | None = None


def draining() -> bool:
    """True once this process was told to stop: a new connection is closed with 1012 after accept."""
    return _draining is not None


def register(connection: Drainable) -> None:
    """Called when a connection is accepted; ``unregister`` when it ends."""
    _open.add(connection)


def unregister(connection: Drainable) -> None:
    """Called once when a connection ends (its cleanup ran)."""
    _open.discard(connection)
    if not _open and _emptied is not None:
        _emptied.set()


def reset() -> None:
    """Forget a finished drain, so that connections are accepted again (tests drain in-process)."""
    global _draining, _emptied
    _draining = _emptied = None


def install() -> None:
    """Replace the server's SIGTERM handler with the drain, once per event loop.

    Only over a handler of a server we know (``SERVERS``: daphne's reactor's ``sigTerm``,
    uvicorn's ``Server.handle_exit``), on the main thread (Python's rule for ``signal.signal``),
    where both run their loop; anywhere else (pytest's own loop, a thread) nothing changes.
    """
    global _installed_on
    loop = asyncio.get_running_loop()
    if _installed_on is loop or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not type(getattr(previous, "__self__", None)).__module__.startswith(SERVERS):
        logger.debug("SIGTERM handler %r is no server's we know: no drain on SIGTERM", previous)
        return
    _installed_on = loop

    def on_sigterm(signum: int, frame: Any) -> None:
        # A Python signal handler runs between two bytecodes of the main thread, maybe inside the
        # loop's own code: hand the drain to the loop, which call_soon_threadsafe wakes.
        loop.call_soon_threadsafe(_start_from_signal, previous)

    signal.signal(signal.SIGTERM, on_sigterm)


_watchdog = False  # set for a drain that a real SIGTERM started: the process must end


def _start_from_signal(previous: Any) -> None:
    global _watchdog
    _watchdog = True
    start(previous)


def start(previous: Any = signal.SIG_DFL) -> asyncio.Task[None] | None:
    """Begin the drain (see the module's docstring) on the running loop; then call ``previous``,
    the server's own SIGTERM handler. A drain already under way is left to finish (None)."""
    global _draining, _emptied
    if _draining is not None:
        return None
    _emptied = asyncio.Event()
    # A context of its own: a signal handler (and so the callback it schedules) runs in the context
    # of whatever code it interrupted, maybe a task awaiting a thread-sensitive sync_to_async call,
    # whose asgiref marker (SyncToAsync.deadlock_context) would make the drain's own database call
    # fail with "Single thread executor already being used, would deadlock" (seen in rolling
    # restarts under load: the process's row was left to the others' heartbeats).
    _draining = asyncio.get_running_loop().create_task(
        _drain(previous), name="sessions-drain", context=contextvars.Context()
    )
    return _draining


async def _drain(previous: Any) -> None:
    count = len(_open)
    logger.info("SIGTERM: draining %d connection(s), at most %s s", count, app_settings.DRAIN_TIMEOUT)
    try:
        stop_listening(previous)
        for connection in list(_open):
            try:
                connection.close_when_idle(protocol.CLOSE_SERVICE_RESTART)
            except Exception:
                # One socket's failure (a server that refuses 1012 through a wrapped send) must
                # not keep the others open: logged, and the server's shutdown closes it.
                logger.exception("could not close a socket with 1012")
        if _open:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(app_settings.DRAIN_TIMEOUT):
                    await _emptied.wait()
        if _open:
            logger.warning("drain timed out: %d connection(s) still open; the server closes them", len(_open))
        else:
            logger.info("drained %d connection(s)", count)
        await _forget_this_process()
    except Exception:
        logger.exception("the drain failed; exiting all the same")
    finally:
        _exit(previous)  # whatever happened: a process told to stop must stop


def stop_listening(previous: Any) -> None:
    """Close the listening sockets of the server whose SIGTERM handler ``previous`` is: uvicorn's
    ``asyncio.Server`` objects (``Server.servers``), or the Twisted reactor's listening ports
    (``IListeningPort`` among ``getReaders()``; daphne listens on nothing else). Anything else: none."""
    owner = getattr(previous, "__self__", None)
    module = type(owner).__module__
    if module.startswith("uvicorn."):
        for server in getattr(owner, "servers", ()):
            server.close()
    elif module.startswith("twisted.internet."):
        interfaces = sys.modules["twisted.internet.interfaces"]
        for reader in owner.getReaders():
            if interfaces.IListeningPort.providedBy(reader):
                reader.stopListening()


async def _forget_this_process() -> None:
    """Stop the heartbeat (it would write the row again) and delete this process's row."""
    from . import process  # process imports this module

    process.stop_running()
    try:
        await database_sync_to_async(process.forget_this_process)()
    except Exception:
        # Broad on purpose: the database may be down; the other processes' heartbeats remove the row.
        logger.warning("could not delete this process's row", exc_info=True)


# Seconds the server's own shutdown may take after the drain before the process ends itself.
EXIT_GRACE = 5.0


def _exit(previous: Any) -> None:
    """Hand over to the server's own SIGTERM handling (or the default: the process ends).

    After a real SIGTERM, a watchdog ends the process ``EXIT_GRACE`` seconds later if it is still there: after daphne's
    reactor stopped, interpreter exit joins the threads of ``sync_to_async``, and a sync HTTP
    request caught at SIGTERM (WhiteNoise's middleware in ``async_to_sync``) waits for the stopped
    loop forever (seen under load in conformance runs: the process never exited). Everything
    this process owes is done by now: sockets closed, its row deleted.
    """
    if _watchdog:
        watchdog = threading.Timer(EXIT_GRACE, _exit_now)
        watchdog.daemon = True
        watchdog.start()
    if callable(previous):
        previous(signal.SIGTERM, None)
        return
    signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)


def _exit_now() -> None:
    logger.warning("still running %s s after the drain: exiting now", EXIT_GRACE)
    logging.shutdown()
    os._exit(0)
