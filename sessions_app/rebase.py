"""Rebase a stale RFC 6902 patch on the changes made since its version (operational transformation).

A patch made on version ``v`` while the session is at ``v + k`` is transformed against the ``k``
changes since (their operations as applied, in order) so that applying the result to the current
document does what its author meant on the document they saw; or it is refused with
``RebaseConflict`` when it really collides. Pure functions, no Django: the server
(sessions_app/patching.py) and the browser client (static/sessions/rebase.js, a line-by-line
port: tests/rebase_cases.json holds cases both must agree on) use the same rules.

The rules are json0's, the JSON type of ShareDB (github.com/ottypes/json0, ``lib/json0.js``,
``transformComponent``), carried over to RFC 6902 operations:

- Every operation is seen as primitive effects at JSON Pointers (RFC 6901): ``add`` inserts
  (into an array: at an index, ``-`` appends, RFC 6902 section 4.1) or sets an object member;
  ``remove`` deletes (from an array: the later elements shift down, section 4.2); ``replace``
  sets a value; ``move`` is a delete at ``from`` then an insert at ``path`` (section 4.4);
  ``copy`` reads ``from`` then inserts at ``path``; ``test`` reads.
- Index shifting, as json0's list insert / delete (``li`` / ``ld``): an insert at index ``i`` of
  an array moves the elements at ``i`` and after, and every pointer through them, up by one; a
  delete at ``i`` moves those after ``i`` down by one. Two inserts at the same index: the patch
  being rebased stays at the index, before the element inserted meanwhile (json0's ``left``
  side, the side ShareDB's server gives a submitted operation in ``lib/ot.js`` ``transform``). An
  append (``-``) never shifts an index, and two appends commute (both land, in the server's order).
- An insert into an array never collides with a change to the elements around it (json0: ``li``
  against anything below the same index only shifts).
- Everything else that overlaps collides (json0 would overwrite; here the author decides again):
  the same value changed by both (``replace``/``remove``/object ``add`` at one pointer); one
  pointer a prefix of the other (a parent replaced, removed or set while the other changed
  inside it, or a child changed while the other replaced its parent); a ``test``, or a ``copy``
  source, at a value changed since: a patch that uses ``test`` to insist on the exact base
  document so conflicts as soon as that value changed, and a ``test`` whose pointer only
  shifted is checked against the current document when the patch is applied.

Whether a pointer token is an array index or an object member name is decided by the current
document (the one the result is applied to): the containers along a pointer that survives the
transformation are the same containers as at version ``v`` (any change that replaced or removed
one of them collides), so their kinds have not changed. For an operation after the first of a
patch, its pointers are mapped back through the patch's earlier (transformed) operations first;
a container the patch itself created meanwhile was untouched by the changes since.

Bounded: ``max_steps`` pairs of pointer comparisons (``RebaseTooCostly``, a RebaseConflict). Each
of the patch's operations costs at least three comparisons per operation of the changes since
(resolving its pointer, transforming it, transforming them), so a patch whose operations times
the changes' operations, times three, exceed the budget is refused before any work, and so is
one whose changes since alone hold more operations than the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .rebase_effects import (  # noqa: F401 - RebaseConflict, RebaseTooCostly, the pointers: this module's API too
    CREATED,
    DELETE,
    INSERT,
    READ,
    SET,
    THROUGH,
    Effect,
    RebaseConflict,
    RebaseTooCostly,
    effects,
    format_pointer,
    is_index,
    parse_pointer,
    transform,
    unapply,
)


def kind_at(document: Any, path: Sequence[str]) -> bool | None:
    """True when ``document`` has an array at ``path``, False for an object, None for anything
    else (no such value, a scalar)."""
    node = document
    for token in path:
        if isinstance(node, list):
            if not is_index(token) or int(token) >= len(node):
                return None
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            return None
    return True if isinstance(node, list) else False if isinstance(node, dict) else None


class _Budget:
    def __init__(self, steps: int) -> None:
        self.left = steps

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise RebaseTooCostly("the patch and the changes since its version are too many to rebase")


def _through(a: Effect, theirs: list[Effect], budget: _Budget) -> Effect:
    budget.spend(len(theirs))
    for b in theirs:
        a = transform(a, b, left=True)  # a THROUGH effect never ties
    return a


def _resolve(
    e: Effect, theirs: list[Effect], mine: list[Effect], document: Callable[[], Any], budget: _Budget
) -> Effect:
    """``e`` (an effect of the patch) with the kind of every container along its pointer, read
    from the current document (``document()``) at the pointer's transformed prefix."""
    arrays: list[bool | None] = [False]  # the root of a session's document is an object
    for depth in range(1, len(e.path)):
        if not any(len(b.path) > depth for b in theirs):
            arrays.append(None)  # no change since reaches this depth: its kind does not matter
            continue
        prefix = _through(Effect(THROUGH, e.path[:depth], tuple(arrays)), theirs, budget).path
        for done in reversed(mine):
            prefix = unapply(prefix, done)  # type: ignore[arg-type]
            if prefix is CREATED:
                break
        arrays.append(None if prefix is CREATED else kind_at(document(), prefix))  # type: ignore[arg-type]
    return replace(e, arrays=tuple(arrays))


def rebase(
    ops: list[Any],
    changes: Sequence[list[Any]],
    document: Callable[[], Any],
    *,
    max_steps: int = 20_000,
    left: bool = True,
) -> list[Any]:
    """``ops`` (RFC 6902 operations made on some version) transformed to apply after ``changes``
    (the operations of each change since, oldest first, as applied); ``document()`` returns the
    current document (the one after ``changes``), read only when a container's kind is needed.

    Returns new operation objects: a copy of each operation with ``path`` (and ``from``) moved,
    every other member as sent. Raises RebaseConflict (``reason``) when an operation collides
    with a change since, RebaseTooCostly past ``max_steps`` pointer comparisons. The result's
    ``test`` operations and values are not checked here: applying it does that. ``left``: the
    patch's inserts stay before those made at the same index since (the server's rule; False
    puts them after, the other side of json0's tie, for checking that both orders agree).
    """
    budget = _Budget(max_steps)
    # Refused before any work when the least it could cost is over the budget (module docstring).
    their_ops = sum(len(change) for change in changes)
    budget.spend(their_ops)
    if 3 * their_ops * len(ops) > budget.left:
        raise RebaseTooCostly("the patch and the changes since its version are too many to rebase")
    theirs = [e for change in changes for op in change for e in effects(op) if e.kind != READ]
    out: list[Any] = []
    mine: list[Effect] = []  # the patch's effects so far, transformed
    appended: list[tuple[str, ...]] = []  # arrays the patch appended to whose length changed since
    for op in ops:
        moved: list[Effect] = []
        for e in effects(op):
            for array in appended:
                n = len(array)
                if len(e.path) > n and e.path[:n] == array and is_index(e.path[n]):
                    # An index into an array this patch appended to (with "-") while others
                    # changed its length: where the appended element is now is not known here.
                    raise RebaseConflict(f"{format_pointer(array)} changed length since")
            e = _resolve(e, theirs, mine, document, budget)
            if e.kind == INSERT and e.path and e.path[-1] == "-":
                if any(b.kind in (INSERT, DELETE) and b.path[:-1] == e.path[:-1] for b in theirs):
                    appended.append(e.path[:-1])
            budget.spend(2 * len(theirs))
            after: list[Effect] = []
            for b in theirs:
                a = transform(e, b, left=left)
                after.append(transform(b, e, left=not left))
                e = a
            theirs = after
            mine.append(e)
            moved.append(e)
        rebuilt = dict(op)
        rebuilt["path"] = format_pointer(moved[-1].path)
        if "from" in op:
            rebuilt["from"] = format_pointer(moved[0].path)
        out.append(rebuilt)
    return out
