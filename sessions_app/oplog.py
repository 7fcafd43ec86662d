"""Log lines for operators (issue 13, item 5): one per connection outcome, per error answered to a
client, per outage of Redis or the database; and the filter that shortens DisallowedHost.

Every line carries its fields twice: in the message (for ``LOG_FORMAT=text``) and as ``extra``
attributes of the record (keys of the object under ``LOG_FORMAT=json``, python-json-logger's
``JsonFormatter``). No token is ever logged: a connection is named by its channel name, a user by id.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

logger = logging.getLogger("sessions_app.connections")
outage_logger = logging.getLogger("sessions_app.outages")


# --- connections ---------------------------------------------------------------------------------


def _who(conn: Any) -> dict[str, Any]:
    user = getattr(conn, "user", None)
    return {
        "connection": getattr(conn, "channel_name", "") or "-",
        "user_id": user["id"] if user else "-",
        "session": str(conn.session_id) if getattr(conn, "session_id", None) else "-",
    }


def _reason(conn: Any, code: int | None) -> str:
    """Why a socket ended: the error code that closed it (protocol section 6), ``too_slow``,
    ``drain`` (1012), or ``client closed`` when the server sent no close."""
    if conn.close_reason:
        return conn.close_reason
    if conn.close_code is None:
        return "client closed"
    return "drain" if code == 1012 else "server closed"


def connection_ended(conn: Any) -> None:
    """One INFO line when a socket ends (``SessionConsumer.cleanup``): connection id, user id (or
    -), joined session, close code (the server's, else the client's), reason, duration in seconds,
    frames received and sent. ``conn``: an OrderedConsumer (sessions_app.transport)."""
    code = conn.close_code if conn.close_code is not None else conn.client_close_code
    fields = {
        **_who(conn),
        "close_code": code,
        "reason": _reason(conn, code),
        "duration": round(time.monotonic() - conn.opened_at, 3) if conn.opened_at else 0.0,
        "frames_in": conn.frames_in,
        "frames_out": conn.frames_out,
    }
    logger.info(
        "connection ended: %(connection)s user=%(user_id)s session=%(session)s code=%(close_code)s "
        "reason=%(reason)s duration=%(duration)ss frames_in=%(frames_in)s frames_out=%(frames_out)s",
        fields,
        extra=fields,
    )


def error_sent(conn: Any, code: str, state: str | None) -> None:
    """An expected error answered to a client (protocol section 6): DEBUG only, scanners and bad
    clients must not flood the log."""
    if logger.isEnabledFor(logging.DEBUG):
        fields = {**_who(conn), "error": code, "state": state or "-"}
        logger.debug("error sent: %(error)s state=%(state)s to %(connection)s user=%(user_id)s", fields, extra=fields)


def server_error(conn: Any, state: str | None) -> None:
    """A request that failed unexpectedly (answered ``server_error``): ERROR with the traceback
    (call it from the ``except`` block), the connection, user and state."""
    fields = {**_who(conn), "state": state or "-"}
    logger.exception(
        "state %(state)s failed on %(connection)s user=%(user_id)s session=%(session)s", fields, extra=fields
    )


# --- outages -------------------------------------------------------------------------------------


class Outage:
    """Logs an outage of one service once: a WARNING with the traceback at the first failure, then
    a count, and one WARNING ``<service> recovered after N s, M failures`` at the next success.

    Per process; thread safe (database hops run in threads; the rest on the event loop). ``ok``
    is one attribute read while the service is up, so hot paths may call it after every success.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._since: float | None = None  # monotonic time of the first failure of this outage
        self._failures = 0

    @property
    def down(self) -> bool:
        """True from a failure until the next success."""
        return self._since is not None

    def failed(self, what: str, exc: BaseException | None = None) -> None:
        """Record a failure of ``what`` (e.g. ``publish session.push``); call it from the
        ``except`` block, or give ``exc``: the first of an outage is logged with its traceback."""
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
            self._failures += 1
        if first:
            fields = {"service": self.service, "operation": what, "outage": "started"}
            outage_logger.warning(
                "%(service)s unavailable (%(operation)s failed); counting failures until it is back",
                fields,
                exc_info=exc or True,
                extra=fields,
            )

    def ok(self) -> None:
        """Record a success: ends the outage, if any, with its line."""
        if self._since is None:
            return
        with self._lock:
            since, failures = self._since, self._failures
            if since is None:
                return
            self._since, self._failures = None, 0
        fields = {
            "service": self.service,
            "outage": "ended",
            "seconds": round(time.monotonic() - since, 1),
            "failures": failures,
        }
        outage_logger.warning("%(service)s recovered after %(seconds)s s, %(failures)s failures", fields, extra=fields)


LAYER = Outage("channel layer")
DATABASE = Outage("database")


# --- requests ------------------------------------------------------------------------------------


class DisallowedHostOneLine(logging.Filter):
    """On ``django.security.DisallowedHost``: the record becomes one WARNING line, without the
    traceback, naming the Host and the client address (nginx forwards any Host; scanners send many)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        meta = getattr(request, "META", {}) or {}
        fields = {"host": meta.get("HTTP_HOST", "-"), "client": meta.get("REMOTE_ADDR", "-")}
        record.msg, record.args = "disallowed Host %(host)r from %(client)s", fields
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        record.host, record.client = fields["host"], fields["client"]
        record.__dict__.pop("request", None)  # not a field of the line (nor of the JSON object)
        return True
