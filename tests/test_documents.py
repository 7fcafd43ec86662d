"""The document rules: bounded growth under JSON Patch, depth, readable errors."""

from typing import Any

import jsonpatch
import pytest

from sessions_app import documents, protocol
from sessions_app.protocol import ProtocolError


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
