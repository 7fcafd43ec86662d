"""A connection's timer and background tasks.

One timer at a time (the auth deadline, then ``token_expiring``, then ``token_expired``): a
``TimerHandle`` costs no task while it waits, and one instead of several keeps idle sockets small.
Tasks a connection starts (a timer's action, the rest of a send the transport made wait, a layer
message whose handler suspended) are kept here, so that they are cancelled with the connection and
their failures are logged, never lost.
"""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

Action = Callable[[], Coroutine[Any, Any, None]]

try:  # daphne's WebSocket protocol raises autobahn's Disconnected when sending to a closed socket
    from autobahn.exception import Disconnected
except ImportError:  # pragma: no cover - autobahn comes with daphne
    Disconnected = OSError  # type: ignore[assignment,misc]

# What a send raises when the client is already gone: uvicorn's ClientDisconnected (an OSError),
# autobahn's Disconnected (a RuntimeError subclass) on daphne. A frame to a gone client is dropped
# quietly: its websocket.disconnect follows.
CLIENT_GONE: tuple[type[BaseException], ...] = (OSError, Disconnected)


class Timers:
    """The pending timer and the running tasks of one connection."""

    __slots__ = ("_tasks", "_timer")

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: tuple[asyncio.Task[None], ...] = ()

    def after(self, delay: float, action: Action) -> None:
        """Run ``action`` in ``delay`` seconds (at once if negative), replacing the pending timer."""
        self.cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._fire, action)

    def _fire(self, action: Action) -> None:
        self._timer = None
        self.start(action())

    def start(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coroutine`` in a task of this connection; returns the task."""
        task = asyncio.ensure_future(coroutine)
        self._tasks = (*self._tasks, task)  # a strong reference while it runs
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks = tuple(t for t in self._tasks if t is not task)
        if task.cancelled() or task.exception() is None:
            return
        if isinstance(task.exception(), CLIENT_GONE):
            logger.debug("a connection task ended with its client gone", exc_info=task.exception())
        else:
            logger.error("a connection task failed", exc_info=task.exception())

    def cancel_timer(self) -> None:
        """Cancel the pending timer, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def cancel_all(self) -> None:
        """Cancel the timer and every running task (the connection is closed)."""
        self.cancel_timer()
        for task in self._tasks:
            task.cancel()
