"""Prometheus metrics of this process (docs/metrics.md): what is counted, and how cheaply.

Every figure is a ``prometheus_client`` metric named ``sessions_*``. Several processes are counted
together through the client's multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` set (a directory
the processes of one host share, emptied before they start), each process writes its values to
memory-mapped files there and ``GET /metrics`` on any process (sessions_app.metrics_view) reads
them all. Without it the process keeps them in memory and serves its own.

Cost. A ``prometheus_client`` update takes a lock (and, in multiprocess mode, writes to a mapped
file): a counter's ``inc`` and a histogram's ``observe`` together cost 1.1 us per frame in memory
and 2.3 us in multiprocess mode (bench/metrics_cost.py, docs/metrics.md).
The events of every frame (frames and reply latency by state, errors by code) and of every push
(sent, dropped) are therefore counted in plain integers on ``_Tally`` objects, bound once per label
value, and added to the metrics by ``flush`` (every ``FLUSH_INTERVAL`` seconds, before a scrape
answered here, and at exit): a frame costs one dict lookup, two integer additions, a bisect and a
clock read, 0.23 us. Rare events (connections, handshakes, layer and database errors, heartbeats) update
the metrics at once.

Label values are bounded by the code, never by clients: states are the registered ones
(sessions_app.registry.REGISTRY) and ``unknown``; error codes are sessions_app.protocol's and
``other``; reasons and operations are the constants below.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import logging
import os
import time
from bisect import bisect_left
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from . import protocol
from .registry import REGISTRY

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0  # seconds between the additions of the per-frame counts to the metrics
UNKNOWN = "unknown"  # the state label of a frame whose state is not registered (or not valid)
OTHER = "other"  # the code label of an error code this module does not know (an app's own)
# Reply latency buckets, seconds: a ping is ~0.1 ms, a patch of a large document ~100 ms.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))
ERROR_CODES = frozenset(
    value for name, value in vars(protocol).items() if name.isupper() and isinstance(value, str) and value.islower()
) - {protocol.DEACTIVATED, protocol.PASSWORD_CHANGED, protocol.LOGGED_OUT, protocol.DISCONNECTED}

# Why a push did not reach its socket (``sessions_pushes_dropped_total{reason}``).
SEEN = "seen"  # the connection already has that version of the joined session (snapshot or reply)
LEFT = "left"  # the connection left the session's group before the push arrived
BUSY = "busy"  # SESSIONS_PUSH_BUFFER pushes already waited behind the request being handled
OVERFLOW = "overflow"  # a local channel without a reader was full (its oldest message dropped)
# Channel-layer operations (``sessions_layer_errors_total{operation}``).
GROUP_ADD, GROUP_DISCARD, PUBLISH, RECEIVE = "group_add", "group_discard", "publish", "receive"

CONNECTIONS_OPEN = Gauge(
    "sessions_connections_open", "Authenticated WebSocket connections open.", multiprocess_mode="livesum"
)
HANDSHAKES = Counter("sessions_handshakes", "Socket handshakes by outcome: ok, or the error code.", ["outcome"])
FRAMES = Counter("sessions_frames", "Frames from authenticated clients by state.", ["state"])
ERRORS = Counter("sessions_errors", "Error frames sent, by code.", ["code"])
REPLY_SECONDS = Histogram(
    "sessions_reply_seconds", "Seconds from a frame's arrival to its reply or error.", ["state"], buckets=BUCKETS
)
PUSHES_SENT = Counter("sessions_pushes_sent", "Session pushes written to sockets.")
PUSHES_DROPPED = Counter("sessions_pushes_dropped", "Pushes not written to a socket, by reason.", ["reason"])
SEND_BUFFER_CLOSES = Counter("sessions_send_buffer_closes", "Sockets closed 4008: the client did not read.")
LAYER_ERRORS = Counter("sessions_layer_errors", "Channel layer failures, by operation.", ["operation"])
DATABASE_ERRORS = Counter("sessions_database_errors", "Database hops that failed: unreachable.", ["operation"])
HEARTBEATS = Counter("sessions_process_heartbeats", "Process heartbeats written.")
HEARTBEAT_FAILURES = Counter("sessions_process_heartbeat_failures", "Process heartbeats that failed.")
LAST_HEARTBEAT = Gauge(
    "sessions_process_heartbeat_timestamp_seconds",
    "Unix time of each live process's last heartbeat (label pid in multiprocess mode).",
    multiprocess_mode="liveall",
)


class _Tally:
    """Counts of one label value, in plain numbers, until ``flush`` adds them to ``child``."""

    __slots__ = ("child", "done", "n")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n = 0
        self.done = 0

    def flush(self) -> None:
        delta = self.n - self.done
        if delta:
            self.done += delta
            self.child.inc(delta)


class _StateTally:
    """A state's frames and the histogram of their reply latencies, as plain numbers."""

    __slots__ = ("buckets", "buckets_done", "frames", "histogram", "seconds", "seconds_done")

    def __init__(self, state: str) -> None:
        self.frames = _Tally(FRAMES.labels(state))
        self.histogram = REPLY_SECONDS.labels(state)
        self.buckets = [0] * len(BUCKETS)  # not cumulative, as prometheus_client keeps them
        self.buckets_done = [0] * len(BUCKETS)
        self.seconds = self.seconds_done = 0.0

    def flush(self) -> None:
        self.frames.flush()
        if self.seconds != self.seconds_done:
            # prometheus_client's Histogram has no public "add n observations"; its children are
            # its _sum and per-bucket _buckets values (tests/test_metrics.py checks the result).
            self.histogram._sum.inc(self.seconds - self.seconds_done)
            self.seconds_done = self.seconds
        for index, count in enumerate(self.buckets):
            delta = count - self.buckets_done[index]
            if delta:
                self.buckets_done[index] = count
                self.histogram._buckets[index].inc(delta)


_states: dict[str | None, _StateTally] = {}
_errors: dict[str, _Tally] = {}
_pushes_sent = _Tally(PUSHES_SENT)
_dropped = {reason: _Tally(PUSHES_DROPPED.labels(reason)) for reason in (SEEN, LEFT, BUSY, OVERFLOW)}
_tallies: list[_Tally | _StateTally] = [_pushes_sent, *_dropped.values()]
clock = time.perf_counter  # the clock of ``answered``'s ``started``


def _state_tally(state: str | None) -> _StateTally:
    label = state if state is not None and state in REGISTRY else UNKNOWN
    tally = _states.get(label)
    if tally is None:
        tally = _states[label] = _StateTally(label)  # an unregistered name is never a key: a
        _tallies.append(tally)  # client cannot grow this dict
    if state is None:
        _states[None] = tally
    return tally


def answered(state: str | None, started: float) -> None:
    """A frame of ``state`` (None: not known) that arrived at ``clock()`` ``started`` is answered."""
    tally = _states.get(state) or _state_tally(state)
    tally.frames.n += 1
    seconds = clock() - started
    tally.buckets[bisect_left(BUCKETS, seconds)] += 1
    tally.seconds += seconds


def error_sent(code: str, *, authenticated: bool) -> None:
    """An error frame of ``code`` was sent; before authentication it refused the handshake."""
    tally = _errors.get(code)
    if tally is None:
        # Codes come from the server's code (ProtocolError), never from a client: bounded.
        tally = _errors[code] = _Tally(ERRORS.labels(code if code in ERROR_CODES else OTHER))
        _tallies.append(tally)
    tally.n += 1
    if not authenticated:
        HANDSHAKES.labels(code if code in ERROR_CODES else OTHER).inc()


def connection_opened() -> None:
    """A connection authenticated (its handshake succeeded)."""
    HANDSHAKES.labels("ok").inc()
    CONNECTIONS_OPEN.inc()


def connection_closed() -> None:
    """An authenticated connection closed."""
    CONNECTIONS_OPEN.dec()


def push_sent() -> None:
    """A session push was handed to a socket."""
    _pushes_sent.n += 1


def push_dropped(reason: str) -> None:
    """A push was not handed to a socket, for ``reason`` (SEEN, LEFT, BUSY, OVERFLOW)."""
    _dropped[reason].n += 1


def send_buffer_closed() -> None:
    """A socket was closed with 4008 (its client does not read)."""
    SEND_BUFFER_CLOSES.inc()


def layer_error(operation: str) -> None:
    """A channel-layer ``operation`` (GROUP_ADD, GROUP_DISCARD, PUBLISH, RECEIVE) failed."""
    LAYER_ERRORS.labels(operation).inc()


def database_error(operation: str) -> None:
    """A database hop (the service or selector named ``operation``) could not reach the database."""
    DATABASE_ERRORS.labels(operation).inc()


def heartbeat(ok: bool) -> None:
    """The process heartbeat ran: written (``ok``) or failed."""
    if ok:
        HEARTBEATS.inc()
        LAST_HEARTBEAT.set(time.time())
    else:
        HEARTBEAT_FAILURES.inc()


def flush() -> None:
    """Add the counts kept since the last flush to the metrics (where a scrape reads them)."""
    for tally in _tallies:
        tally.flush()


async def flush_loop() -> None:
    """Flush every FLUSH_INTERVAL seconds (started with the heartbeat, sessions_app.process)."""
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        flush()


def multiprocess_dir() -> str | None:
    """The multiprocess mode's directory (``PROMETHEUS_MULTIPROC_DIR``), or None: one process."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _at_exit() -> None:
    """At interpreter exit: flush, and remove this process's live gauges (connections, heartbeat)
    so the sums of the processes left do not count it. A SIGKILL skips this; the scrape does it
    for processes that are gone (sessions_app.metrics_view)."""
    flush()
    path = multiprocess_dir()
    if path is not None:
        for name in glob.glob(os.path.join(path, f"gauge_live*_{os.getpid()}.db")):
            # What multiprocess.mark_process_dead removes; a scrape may have removed it first.
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)


atexit.register(_at_exit)
