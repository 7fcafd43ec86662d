"""The document rules: bounded growth under JSON Patch, depth, readable errors."""

import sys
from typing import Any

import jsonpatch
import pytest

from sessions_app import documents, protocol
from sessions_app.protocol import ProtocolError
from sessions_app.work import Work, limit_for


def refused(document: dict[str, Any], ops: list[dict[str, Any]]) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        documents.apply_patch(document, ops)
    assert caught.value.code == protocol.INVALID_DATA
    return caught.value


def test_copies_that_double_the_document_are_refused_before_they_are_made(settings: Any, monkeypatch: Any) -> None:
    settings.SESSIONS_MAX_DOCUMENT_BYTES = 1_048_576
    sizes: list[int] = []  # the document's size after each operation applied
    apply = jsonpatch.JsonPatch.apply

    def counted(self: jsonpatch.JsonPatch, obj: Any, in_place: bool = False) -> Any:
        # Stop a regression before the document fills the memory (2**40 times 18 bytes).
        assert len(sizes) < 16, f"{len(sizes)} copies made, the document is {sizes[-1]} bytes"
        result = apply(self, obj, in_place)
        sizes.append(protocol.json_size(result))
        return result

    monkeypatch.setattr(jsonpatch.JsonPatch, "apply", counted)
    ops = [{"op": "copy", "from": "", "path": f"/k{i}"} for i in range(40)]  # 2**40 times the root
    error = refused({"a": "x" * 10}, ops)
    assert error.data == {"limit": 1_048_576}
    # Refused on the bound, not after building it: each copy doubles the 18-byte document, the
    # 15th makes it 786,457 bytes, and the 16th, which would pass 1 MiB, is never made.
    assert len(sizes) == 15, sizes
    assert max(sizes) <= 1_048_576


def test_copies_within_the_limit_are_applied() -> None:
    ops = [{"op": "copy", "from": "/a", "path": f"/k{i}"} for i in range(5)]
    assert documents.apply_patch({"a": [1, 2]}, ops) == {"a": [1, 2], **{f"k{i}": [1, 2] for i in range(5)}}


def test_a_document_nested_deeper_than_the_limit_is_refused() -> None:
    deep: Any = "leaf"
    for _ in range(protocol.MAX_DEPTH):
        deep = [deep]
    with pytest.raises(ProtocolError) as caught:
        documents.check_document({"a": deep})  # MAX_DEPTH + 1 levels with the root object
    assert caught.value.code == protocol.INVALID_DATA and "nest" in caught.value.message
    documents.check_document({"a": deep[0]})  # exactly MAX_DEPTH levels


def test_a_patch_that_nests_the_document_too_deeply_is_refused() -> None:
    branch: Any = 1
    for _ in range(40):
        branch = [branch]
    document = {"a": branch}
    ops = [{"op": "copy", "from": "/a", "path": "/a/0" * 39 + "/0"}]  # 40 + 40 levels
    refused(document, ops)


@pytest.mark.parametrize(
    ("ops", "reason"),
    [
        ([{"op": "test", "path": "/n", "value": 2}], "its test failed"),
        ([{"op": "remove", "path": "/missing"}], "does not exist"),
        ([{"op": "add", "path": "/list/-/x", "value": 1}], "does not"),
        ([{"op": "frobnicate", "path": "/n"}], "not a valid RFC 6902 operation"),
        ([{"path": "/n"}], "not a valid RFC 6902 operation"),
    ],
)
def test_an_operation_that_cannot_be_applied_is_named_in_plain_words(ops: list[dict[str, Any]], reason: str) -> None:
    error = refused({"n": 1, "list": []}, ops)
    assert error.message.startswith("Operation 0 (")
    assert reason in error.message
    assert "<class" not in error.message and "Error" not in error.message


def test_the_failing_operation_is_the_one_named() -> None:
    ops = [{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/zzz"}]
    assert refused({"a": 1}, ops).message.startswith("Operation 1 (remove /zzz)")


# --- the work of a patch (issue 11, item 1) -------------------------------------------------------

LISTS, ZEROS = 16, 30_000


def large_document() -> dict[str, Any]:
    """~960 KB: 16 lists of 30,000 zeros under /a, made with copy (a patch's budget allows 8 copies)."""
    document: dict[str, Any] = {"a": {"l0": [0] * ZEROS}, "x": {}}
    for first in range(1, LISTS, 8):
        ops = [{"op": "copy", "from": "/a/l0", "path": f"/a/l{i}"} for i in range(first, min(first + 8, LISTS))]
        document = documents.apply_patch(document, ops)
    assert protocol.json_size(document) > 950_000
    return document


class LineBudget:
    """A ``sys.settrace`` hook that counts the Python lines run and fails past ``limit``: an
    operation count, where a timing would depend on the machine."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        return self.line

    def line(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            self.lines += 1
            if self.lines > self.limit:
                raise AssertionError(f"more than {self.limit} Python lines")
        return self.line


def counted(limit: int, call: Any) -> tuple[Any, int]:
    """``call()``'s result (or the exception it raised) and the Python lines it ran, at most ``limit``."""
    budget = LineBudget(limit)
    sys.settrace(budget)
    try:
        result: Any = call()
    except ProtocolError as exc:
        result = exc
    finally:
        sys.settrace(None)
    return result, budget.lines


def test_a_thousand_moves_over_a_large_document_cost_what_the_patch_says_not_times_the_document() -> None:
    # The reproduction of issue 11: 999 moves of /a onto itself, then a failing test. Each move
    # used to walk the whole moved value to check its depth (480,000 nodes, 999 times: minutes).
    document = large_document()
    ops = [{"op": "move", "from": "/a", "path": "/a"}] * 999 + [{"op": "test", "path": "/a", "value": 1}]
    error, lines = counted(2_000_000, lambda: documents.apply_patch(document, ops))
    assert isinstance(error, ProtocolError) and error.code == protocol.INVALID_DATA, error
    assert error.message.startswith("Operation 999 (test /a)") and "its test failed" in error.message
    # Far less than one walk of the document per operation (~2.5 million lines each before).
    assert lines < 1_000_000, lines


def test_moves_deeper_over_a_large_document_are_refused_within_the_budget() -> None:
    # Moving /a deeper must check its depth, which walks it: each such walk is charged, and the
    # patch is refused with patch_too_costly once its budget is spent, not after 999 walks.
    document = large_document()
    there_and_back = [{"op": "move", "from": "/a", "path": "/x/a"}, {"op": "move", "from": "/x/a", "path": "/a"}]
    ops = there_and_back * 499 + [{"op": "test", "path": "/a", "value": 1}]
    spent = Work(limit_for(protocol.json_size(ops)))
    error, lines = counted(10_000_000, lambda: documents.apply_patch(document, ops, work=spent))
    assert isinstance(error, ProtocolError) and error.code == protocol.PATCH_TOO_COSTLY, error
    assert error.data == {"limit": spent.limit}
    assert (
        spent.limit < spent.spent <= spent.limit + LISTS * (ZEROS + 1) + LISTS + 2
    )  # stopped in the walk that passed it
    assert lines < 6 * spent.limit


def test_the_work_of_a_patch_is_charged_per_node_it_visits(settings: Any) -> None:
    settings.SESSIONS_PATCH_WORK_MIN = 0
    settings.SESSIONS_PATCH_WORK_PER_BYTE = 8
    document = {"list": list(range(1000)), "deep": {"b": {"c": [1, 2, 3]}}, "to": {}}
    # Pointers: one node per token, plus one per operation.
    spent = Work(1000)
    documents.apply_patch(document, [{"op": "replace", "path": "/deep/b/c/0", "value": 7}], work=spent)
    assert spent.spent == 1 + 4
    # A value from the frame: one per member of each container, plus one per container.
    spent = Work(1000)
    documents.apply_patch(document, [{"op": "add", "path": "/v", "value": {"k": [1, 2], "j": 3}}], work=spent)
    assert spent.spent == 1 + 1 + (2 + 1) + (2 + 1)
    # A copy: its source, before it is made; a move deeper than it was: the value, too.
    spent = Work(1000)
    documents.apply_patch(document, [{"op": "copy", "from": "/deep", "path": "/to/deep"}], work=spent)
    assert spent.spent == 1 + 3 + (1 + 1) + (1 + 1) + (3 + 1)
    spent = Work(1000)
    documents.apply_patch(document, [{"op": "move", "from": "/deep", "path": "/to/moved"}], work=spent)
    assert spent.spent == 1 + 3 + (1 + 1) + (1 + 1) + (3 + 1)
    # A move no deeper than it was: only its pointers (the value still fits).
    spent = Work(1000)
    documents.apply_patch(document, [{"op": "move", "from": "/to/moved", "path": "/moved"}], work=spent)
    assert spent.spent == 1 + 3
    # Array elements shifted: one node per 64.
    spent = Work(1000)
    documents.apply_patch(document, [{"op": "remove", "path": "/list/0"}], work=spent)
    assert spent.spent == 1 + 2 + 1000 // 64


def test_a_copy_of_a_large_value_by_a_small_patch_is_refused_before_it_is_made(settings: Any) -> None:
    settings.SESSIONS_PATCH_WORK_MIN = 10_000
    document = {"big": list(range(20_000))}
    with pytest.raises(ProtocolError) as caught:
        documents.apply_patch(document, [{"op": "copy", "from": "/big", "path": "/again"}])
    assert caught.value.code == protocol.PATCH_TOO_COSTLY and caught.value.data == {"limit": 10_000}
    assert list(document) == ["big"]


def test_the_budget_grows_with_the_size_of_the_patch(settings: Any) -> None:
    settings.SESSIONS_PATCH_WORK_MIN = 1000
    settings.SESSIONS_PATCH_WORK_PER_BYTE = 8
    assert limit_for(10) == 1000
    assert limit_for(65_536) == 8 * 65_536


def test_a_move_deeper_still_checks_the_depth() -> None:
    def nested(levels: int) -> Any:
        value: Any = 1
        for _ in range(levels):
            value = [value]
        return value

    document = {"a": nested(40), "b": nested(30)}
    refused(document, [{"op": "move", "from": "/a", "path": "/b" + "/0" * 29}])  # 1 + 29 + 40 levels
    moved = documents.apply_patch(document, [{"op": "move", "from": "/a", "path": "/b" + "/0" * 10}])
    assert "a" not in moved
