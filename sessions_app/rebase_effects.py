"""The primitive effects of RFC 6902 operations and json0's transformation of one against
another (sessions_app/rebase.py has the rules in words and uses these): an operation as inserts,
deletes, sets and reads at JSON Pointers (RFC 6901), and ``transform(a, b)``, ``a`` as it applies
after ``b`` (index shifts, collisions raised as RebaseConflict)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

INSERT, DELETE, SET, READ, THROUGH = "insert", "delete", "set", "read", "through"
_INDEX = re.compile(r"0|[1-9][0-9]*\Z")
CREATED = object()  # a pointer into a value the patch itself placed (see unapply)


class RebaseConflict(Exception):
    """The patch collides with a change made since its version: ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RebaseTooCostly(RebaseConflict):
    """The transformation would take more than its step budget."""


def parse_pointer(pointer: Any) -> tuple[str, ...]:
    """RFC 6901 reference tokens of ``pointer``, unescaped; raises RebaseConflict for a malformed
    one (the patch cannot be reasoned about: applied on its own version it would be refused)."""
    if not isinstance(pointer, str) or (pointer and pointer[0] != "/"):
        raise RebaseConflict("an operation has a malformed pointer")
    if pointer == "":
        return ()
    tokens = pointer[1:].split("/")
    if any(re.search(r"~[^01]|~\Z", token) for token in tokens):
        raise RebaseConflict("an operation has a malformed pointer")
    return tuple(token.replace("~1", "/").replace("~0", "~") for token in tokens)


def format_pointer(tokens: Sequence[str]) -> str:
    """The JSON Pointer of ``tokens`` (``~`` and ``/`` escaped, RFC 6901 section 3)."""
    return "".join("/" + token.replace("~", "~0").replace("/", "~1") for token in tokens)


@dataclass(frozen=True, slots=True)
class Effect:
    """One primitive effect of an operation: ``kind`` at ``path`` (tokens). ``arrays[d]`` tells
    whether the container at ``path[:d]`` is an array (None: not known), for d < len(path)."""

    kind: str
    path: tuple[str, ...]
    arrays: tuple[bool | None, ...] = ()


def effects(op: Any) -> list[Effect]:
    """The primitive effects of one RFC 6902 operation, in order (kinds of containers unknown)."""
    if not isinstance(op, dict):
        raise RebaseConflict("an operation is not an object")
    name = op.get("op")
    path = parse_pointer(op.get("path"))
    if name == "add":
        return [Effect(INSERT, path)]
    if name == "remove":
        return [Effect(DELETE, path)]
    if name == "replace":
        return [Effect(SET, path)]
    if name == "test":
        return [Effect(READ, path)]
    if name in ("move", "copy"):
        source = parse_pointer(op.get("from"))
        if name == "move" and source == path:
            return [Effect(READ, path)]  # a move onto itself changes nothing (RFC 6902 4.4)
        return [Effect(DELETE if name == "move" else READ, source), Effect(INSERT, path)]
    raise RebaseConflict("an operation is not an RFC 6902 operation")


def is_index(token: str) -> bool:
    return _INDEX.match(token) is not None


def _array_at(a: Effect, b: Effect, depth: int) -> bool:
    """Whether the container at ``a.path[:depth]`` is an array, from ``a``'s kinds or, when the
    two pointers share that prefix, ``b``'s. False for the root's parent (depth -1)."""
    if depth < 0:
        return False
    if depth < len(a.arrays) and a.arrays[depth] is not None:
        return bool(a.arrays[depth])
    if depth < len(b.arrays) and a.path[:depth] == b.path[:depth]:
        return bool(b.arrays[depth])
    return False


def _shifted(path: tuple[str, ...], depth: int, by: int) -> tuple[str, ...]:
    return (*path[:depth], str(int(path[depth]) + by), *path[depth + 1 :])


def transform(a: Effect, b: Effect, *, left: bool) -> Effect:
    """``a`` as it applies after ``b`` (both made on the same document); raises RebaseConflict
    when they overlap. ``left``: at a tie of two inserts at one array index, ``a`` stays before
    ``b`` (json0's side); otherwise it moves after it."""
    if b.kind == READ:
        return a
    p, q = a.path, b.path
    m, n = len(p), len(q)
    if m <= n and q[:m] == p:  # a's pointer is b's or one of its parents
        a_inserts = a.kind == INSERT and m > 0 and _array_at(a, b, m - 1)
        if m == n:
            if a_inserts:
                if b.kind == INSERT and not left and is_index(p[-1]) and is_index(q[-1]):
                    return replace(a, path=_shifted(p, m - 1, 1))
                return a  # before the element b inserted, removed or set
            if b.kind == INSERT and n > 0 and _array_at(b, a, n - 1) and is_index(q[-1]):
                return replace(a, path=_shifted(p, m - 1, 1))  # the element a meant moved up
            raise RebaseConflict(f"both change {format_pointer(p) or 'the document'}")
        if a_inserts or a.kind == THROUGH:
            return a  # b changed inside an element a inserts before, or inside a's container
        raise RebaseConflict(f"{format_pointer(q)} changed inside {format_pointer(p) or 'the document'}")
    if n < m and p[:n] == q:  # a is inside b's value
        if b.kind == INSERT and _array_at(b, a, n - 1) and is_index(q[-1]) and is_index(p[n - 1]):
            return replace(a, path=_shifted(p, n - 1, 1))
        raise RebaseConflict(f"{format_pointer(q) or 'the document'} changed around {format_pointer(p)}")
    if n and n - 1 < m and p[: n - 1] == q[: n - 1] and b.kind in (INSERT, DELETE) and _array_at(a, b, n - 1):
        x, i = p[n - 1], q[n - 1]  # the same array, other indices
        if is_index(x) and is_index(i) and int(i) < int(x):
            return replace(a, path=_shifted(p, n - 1, 1 if b.kind == INSERT else -1))
    return a


def unapply(path: tuple[str, ...], e: Effect) -> tuple[str, ...] | object:
    """``path`` (a pointer after ``e``) as a pointer before ``e``, or CREATED when it points into
    a value ``e`` placed."""
    q = e.path
    n = len(q)
    if e.kind in (READ, THROUGH) or len(path) < n:
        return path
    if e.kind in (INSERT, DELETE) and n and _array_at(e, e, n - 1) and path[: n - 1] == q[: n - 1]:
        x, i = path[n - 1], q[n - 1]
        if not is_index(x):
            return path
        if not is_index(i):
            return path  # an append: the element is past the end of the array before
        if e.kind == INSERT:
            if int(x) == int(i):
                return CREATED
            return _shifted(path, n - 1, -1) if int(x) > int(i) else path
        return _shifted(path, n - 1, 1) if int(x) >= int(i) else path
    if e.kind in (INSERT, SET) and path[:n] == q:
        return CREATED
    return path
