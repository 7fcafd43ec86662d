"""The wire protocol: error codes, close codes, JSON encoding and envelope validation.

The contract is docs/protocol.md (from shared/spec/protocol.md). Nothing here touches the database
or the channel layer; the consumer calls these helpers for every frame, so they are kept cheap.
"""

import re
from typing import Any

from .jsonframes import (  # noqa: F401 - the JSON rules, part of this module's API
    LONG_DIGITS,
    MAX_DEPTH,
    MAX_INTEGER_DIGITS,
    NumberTooLong,
    TooDeep,
    decode,
    depth,
    encode,
    json_size,
    utc_iso,
)

PROTOCOL_VERSION = 1

# Error codes (protocol section 6).
NOT_AUTHENTICATED = "not_authenticated"
AUTH_TIMEOUT = "auth_timeout"
TOKEN_EXPIRED = "token_expired"  # noqa: S105 (an error code, not a secret)
INVALID_JSON = "invalid_json"
INVALID_MESSAGE = "invalid_message"
UNSUPPORTED_FRAME = "unsupported_frame"
MESSAGE_TOO_LARGE = "message_too_large"
UNKNOWN_STATE = "unknown_state"
INVALID_DATA = "invalid_data"
NOT_FOUND = "not_found"
PERMISSION_DENIED = "permission_denied"
NOT_JOINED = "not_joined"
CONFLICT = "conflict"
PATCH_TOO_COSTLY = "patch_too_costly"
QUOTA_EXCEEDED = "quota_exceeded"
RATE_LIMITED = "rate_limited"
TOO_MANY_CONNECTIONS = "too_many_connections"
SERVER_ERROR = "server_error"
UNAVAILABLE = "unavailable"

# Every error code, in the order of docs/protocol.md's table (section 6).
ERROR_CODES = (
    NOT_AUTHENTICATED,
    AUTH_TIMEOUT,
    TOKEN_EXPIRED,
    INVALID_JSON,
    INVALID_MESSAGE,
    UNSUPPORTED_FRAME,
    MESSAGE_TOO_LARGE,
    UNKNOWN_STATE,
    INVALID_DATA,
    NOT_FOUND,
    PERMISSION_DENIED,
    NOT_JOINED,
    CONFLICT,
    PATCH_TOO_COSTLY,
    QUOTA_EXCEEDED,
    RATE_LIMITED,
    TOO_MANY_CONNECTIONS,
    SERVER_ERROR,
    UNAVAILABLE,
)

# Close codes. daphne (autobahn) lets an application send only 1000 or 3000-4999; 1012 goes
# around that check (sessions_app.sockets.TwistedBuffer.close).
CLOSE_NORMAL = 1000
CLOSE_SERVICE_RESTART = 1012  # the process is draining (SIGTERM): reconnect soon, re-join with since
CLOSE_TOO_SLOW = 4008  # the client did not read: SESSIONS_MAX_SEND_BUFFER bytes waited for it
CLOSE_AUTH = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_LARGE = 4413
CLOSE_RATE_LIMITED = 4429
CLOSE_UNAVAILABLE = 4503

# The close code that follows each fatal error; codes not listed leave the connection open.
CLOSE_FOR = {
    NOT_AUTHENTICATED: CLOSE_AUTH,
    TOKEN_EXPIRED: CLOSE_AUTH,
    AUTH_TIMEOUT: CLOSE_AUTH_TIMEOUT,
    MESSAGE_TOO_LARGE: CLOSE_TOO_LARGE,
    TOO_MANY_CONNECTIONS: CLOSE_RATE_LIMITED,
    UNAVAILABLE: CLOSE_UNAVAILABLE,
}

# Why the server ended an authenticated socket (``not_authenticated`` with ``data.reason``, then
# 4401), and the human text of each (docs/protocol.md, section 7, "Sockets the server ends").
DEACTIVATED = "deactivated"  # the account was deactivated or deleted
PASSWORD_CHANGED = "password_changed"  # noqa: S105 (a reason, not a secret)
LOGGED_OUT = "logged_out"  # a refresh token of the user was revoked (POST /api/v1/token/revoke/)
DISCONNECTED = "disconnected"  # an operator closed the connection (the admin)
END_REASONS = {
    DEACTIVATED: "This account is no longer active.",
    PASSWORD_CHANGED: "The password was changed; sign in again.",
    LOGGED_OUT: "This account signed out; sign in again.",
    DISCONNECTED: "An operator closed this connection.",
}

STATE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_ID_LENGTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ProtocolError(Exception):
    """An expected failure, turned into one error frame by the consumer.

    ``code`` is one of the error codes above; ``message`` is the human text sent as ``error``;
    ``errors`` ({field: [messages]}) and ``data`` (machine-readable details, e.g. the current
    version on a conflict) are optional and must be JSON-serialisable. ``close_code`` overrides
    the close code ``CLOSE_FOR`` gives the error (e.g. 4429 for a client that keeps flooding).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        errors: dict[str, list[str]] | None = None,
        data: dict[str, Any] | None = None,
        close_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.errors = errors
        self.data = data
        self.close_code = close_code if close_code is not None else CLOSE_FOR.get(code)


# --- envelope ---------------------------------------------------------------------------------


def valid_id(value: Any) -> bool:
    """True for a request id the server echoes: a string of at most 64 characters or a 64-bit int."""
    if isinstance(value, str):
        return len(value) <= MAX_ID_LENGTH
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


def parse_envelope(message: Any) -> tuple[str, dict[str, Any], Any]:
    """Validate a decoded request ``{state, data?, id?}`` and return ``(state, data, id)``.

    ``data`` defaults to ``{}``; ``id`` is None when absent. Raises ProtocolError(INVALID_MESSAGE)
    when the frame is not an object, or a field is missing or of the wrong type (``null`` included).
    """
    if type(message) is not dict:
        raise ProtocolError(INVALID_MESSAGE, "A request must be a JSON object.")
    state = message.get("state")
    if type(state) is not str or STATE_RE.fullmatch(state) is None:
        raise ProtocolError(INVALID_MESSAGE, "'state' must be a string of 1-64 letters, digits, '_', '-' or '.'.")
    data = message.get("data", {})
    if type(data) is not dict:
        raise ProtocolError(INVALID_MESSAGE, "'data' must be a JSON object.")
    request_id = message.get("id")
    if "id" in message and not valid_id(request_id):
        raise ProtocolError(INVALID_MESSAGE, "'id' must be a string of at most 64 characters or an integer.")
    return state, data, request_id


def echo_fields(message: Any) -> tuple[Any, str | None]:
    """The ``(id, state)`` of a request to echo in its error frame: each only when valid, else None."""
    if type(message) is not dict:
        return None, None
    request_id = message.get("id")
    state = message.get("state")
    return (
        request_id if valid_id(request_id) else None,
        state if type(state) is str and STATE_RE.fullmatch(state) else None,
    )


def reply(state: str, data: dict[str, Any], request_id: Any = None) -> dict[str, Any]:
    """A reply frame ``{state, data, id?}``."""
    frame: dict[str, Any] = {"state": state, "data": data}
    if request_id is not None:
        frame["id"] = request_id
    return frame


def error(
    code: str,
    message: str,
    *,
    request_id: Any = None,
    request_state: str | None = None,
    errors: dict[str, list[str]] | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An error frame ``{state: "error", code, error, id?, request_state?, errors?, data?}``."""
    frame: dict[str, Any] = {"state": "error", "code": code, "error": message}
    if request_id is not None:
        frame["id"] = request_id
    if request_state is not None:
        frame["request_state"] = request_state
    if errors:
        frame["errors"] = errors
    if data is not None:
        frame["data"] = data
    return frame
