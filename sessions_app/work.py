"""The work budget of a patch: nodes of JSON its operations visit, bounded by the patch's size.

A patch of under 64 KiB must not be able to do work proportional to its operations times the
document (issue 11: 1,000 ``move`` operations that each walked a ~1 MB document held a process for
6 minutes). Every operation is charged for what it touches beyond the frame's own bytes:

- resolving its pointers: one node per token;
- a value from the frame (``add``, ``replace``, ``test``): one node per member of each container
  in it (so ``test`` also pays for the comparison, which visits at most that many nodes);
- ``copy``: the same for its source in the document, before the copy is made;
- ``move``: nothing for the value unless it goes deeper than it was (then it is walked to check
  the depth); a value moved no deeper still fits, since the document was within MAX_DEPTH;
- an insertion into or removal from an array: one node per ``SHIFT_RATIO`` elements it shifts
  (a C memmove, far cheaper per element than a visit).

What ``remove`` and ``replace`` drop is freed once: every node freed came with the stored
document, the frame or a charged copy, so their sum is bounded without walking it here. The
budget is ``SESSIONS_PATCH_WORK_PER_BYTE`` nodes per byte of the operations (compact JSON), and at
least ``SESSIONS_PATCH_WORK_MIN``; past it the patch is refused with ``patch_too_costly``.
"""

from typing import Any

import jsonpointer

from . import protocol
from .conf import app_settings
from .protocol import ProtocolError

# Array elements shifted per node charged: shifting is a memmove of pointers, ~100x cheaper per
# element than visiting a node in Python (measured: 0.1 ms to move the head of a 480,000-element
# array, against 0.15 s to walk it).
SHIFT_RATIO = 64


class OverBudget(ProtocolError):
    """The patch needs more work than its budget: ``patch_too_costly`` with ``data.limit`` (nodes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            protocol.PATCH_TOO_COSTLY,
            f"The patch would visit more than {limit} nodes of the document; send smaller patches, "
            "or fewer operations on large values.",
            data={"limit": limit},
        )


def limit_for(size: int) -> int:
    """The budget, in nodes, of a patch whose operations are ``size`` bytes of compact JSON."""
    return max(app_settings.PATCH_WORK_MIN, app_settings.PATCH_WORK_PER_BYTE * size)


class Work:
    """A running count of the nodes a patch has visited; ``spend`` raises OverBudget past ``limit``."""

    __slots__ = ("limit", "spent")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def spend(self, nodes: int) -> None:
        """Charge ``nodes``; raises OverBudget once the total passes the limit."""
        self.spent += nodes
        if self.spent > self.limit:
            raise OverBudget(self.limit)

    def measure(self, value: Any) -> int:
        """The nesting depth of ``value`` (as ``protocol.depth``), charging each container's members.

        Stops descending past ``protocol.MAX_DEPTH`` (the result is then ``MAX_DEPTH + 1``), and
        stops with OverBudget as soon as the budget is spent: never visits more than it may.
        """
        if not isinstance(value, dict | list):
            return 0
        deepest = 0
        stack = [(value, 1)]
        while stack:
            item, level = stack.pop()
            children = item.values() if isinstance(item, dict) else item
            self.spend(len(children) + 1)
            deepest = max(deepest, level)
            if level > protocol.MAX_DEPTH:
                return level
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
        return deepest

    def shift(self, document: Any, path: Any) -> None:
        """Charge an insertion into or a removal from the array that holds ``path``, if any.

        Raises jsonpointer.JsonPointerException for a path that does not resolve to a parent.
        """
        if isinstance(path, str) and path:
            parent, _ = jsonpointer.JsonPointer(path).to_last(document)
            if isinstance(parent, list):
                self.spend(len(parent) // SHIFT_RATIO)


def tokens(pointer: Any) -> int:
    """Reference tokens in a JSON Pointer (``"/a/0"``: 2), 0 for anything that is not a string."""
    return pointer.count("/") if isinstance(pointer, str) else 0
