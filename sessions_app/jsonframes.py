"""JSON as the socket reads and writes it (RFC 8259): exact integers, no NaN, bounded nesting
and number length, compact output. sessions_app/protocol.py re-exports these names: callers use
``protocol.decode``, ``protocol.encode`` and the rest."""

import datetime
import decimal
import json
import math
import re
import uuid
from typing import Any

import orjson

# Deepest nesting of objects and arrays accepted in a frame or a document. Deep values cost
# recursion in every library that walks them (deepcopy, json, jsonpatch); 64 levels is far beyond
# what a document needs and far below Python's recursion limit.
MAX_DEPTH = 64


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
