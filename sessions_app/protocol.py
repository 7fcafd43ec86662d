"""The wire protocol: error codes, close codes, JSON encoding and envelope validation.

The contract is docs/protocol.md (from shared/spec/protocol.md). Nothing here touches the database
or the channel layer; the consumer calls these helpers for every frame, so they are kept cheap.
"""

import datetime
import decimal
import json
import math
import re
import uuid
from typing import Any

import orjson

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
# Deepest nesting of objects and arrays accepted in a frame or a document. Deep values cost
# recursion in every library that walks them (deepcopy, json, jsonpatch); 64 levels is far beyond
# what a document needs and far below Python's recursion limit.
MAX_DEPTH = 64
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


class TooDeep(ValueError):
    """A JSON text nested deeper than ``MAX_DEPTH``; ``value`` is what it parsed to, so that the
    error can echo the request's ``id`` and ``state`` (``echo_fields``), as every error does.
    """

    def __init__(self, message: str, value: Any = None) -> None:
        super().__init__(message)
        self.value = value


# --- JSON -------------------------------------------------------------------------------------

# orjson parses integers beyond 64 bits as floats (silently rewriting the value), so a frame with a
# run of 19+ digits takes the standard library's exact parser instead. ASCII digits only: JSON's
# numbers have no others, and ``\d`` (every Unicode digit) scans about 5x slower (a 1 MiB document:
# ~50 ms against ~10 ms; bench/README.md, patch-size).
LONG_DIGITS = re.compile(r"[0-9][0-9]{18}")


# The most digits an integer may have: CPython's default ``sys.int_max_str_digits``, which bounds the
# CPU that converting one costs (quadratic in its length; CVE-2020-10735). Beyond it, decode raises
# NumberTooLong (invalid_json, docs/protocol.md section 7) instead of the interpreter's ValueError.
MAX_INTEGER_DIGITS = 4300


class NumberTooLong(ValueError):
    """An integer with more than MAX_INTEGER_DIGITS digits (valid JSON this server does not read)."""


def _exact_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INTEGER_DIGITS:
        raise NumberTooLong(f"an integer of {digits} digits; at most {MAX_INTEGER_DIGITS} are accepted")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:32]}")
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def decode(text: str) -> Any:
    """Parse one JSON text exactly as sent (RFC 8259).

    Refuses ``NaN``, ``Infinity`` and numbers that overflow a double, which are not JSON; keeps
    integers exact up to MAX_INTEGER_DIGITS digits and raises NumberTooLong (a ValueError) for a
    longer one. Raises ``ValueError`` (json.JSONDecodeError or orjson's) on
    invalid input, including nesting past orjson's own limit (1024 levels), and its subclass
    ``TooDeep`` for nesting deeper than ``MAX_DEPTH``, carrying the parsed value.
    """
    long_digits = LONG_DIGITS.search(text) is not None
    if not long_digits:
        value = orjson.loads(text)
    else:
        try:
            value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_exact_int)
        except RecursionError:
            # Past the standard library's recursion limit (about 1000 levels). orjson parses up
            # to 1024 levels, enough to find the id and state to echo (integers of more than 64
            # bits become floats there, which are not ids anyway); past that it raises
            # JSONDecodeError, a ValueError (invalid_json), as for a frame without long digits.
            raise TooDeep(f"nested deeper than {MAX_DEPTH} levels", orjson.loads(text)) from None
    # Nesting needs an opening bracket per level: count them before walking the value.
    if text.count("[") + text.count("{") > MAX_DEPTH and depth(value) > MAX_DEPTH:
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels", value)
    if long_digits:
        # The standard library accepts lone surrogate escapes (backslash-u-d800), which are not
        # Unicode scalar values and cannot be stored (orjson refuses them): re-encoding finds them.
        encode(value).encode()
    return value


def depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0, ``[]`` and ``{}`` are 1), without recursion.

    Stops walking once past ``MAX_DEPTH`` (the result is then ``MAX_DEPTH + 1``).
    """
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            return level
        stack.extend((child, level + 1) for child in children)
    return deepest


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode(value: Any) -> str:
    """Serialise to compact JSON text: UUIDs as strings, datetimes ISO 8601, decimals as strings.

    Aware datetimes keep their offset (the server only produces UTC). Integers beyond 64 bits,
    which orjson refuses, go through the standard library. Falsy values are kept as they are.
    ``NaN`` and infinities never reach this from a client (``decode`` refuses them); orjson would
    write them as ``null``, so server code must not produce them.
    """
    try:
        return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=_default, allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def utc_iso(moment: datetime.datetime) -> str:
    """An aware datetime as ISO 8601 in UTC with a ``Z`` suffix, e.g. ``2026-11-30T05:41:27.123456Z``."""
    if moment.tzinfo is not datetime.UTC:
        moment = moment.astimezone(datetime.UTC)
    return f"{moment.isoformat()[:-6]}Z"  # drop "+00:00"


def json_size(value: Any) -> int:
    """Size in bytes of the compact UTF-8 JSON encoding of ``value``."""
    return len(encode(value).encode())


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
