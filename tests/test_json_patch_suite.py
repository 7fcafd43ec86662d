"""The community RFC 6902 test suite (json-patch/json-patch-tests, vendored under
tests/data/json_patch_tests) against the server's patch path, ``documents.apply_patch_text``: the
function ``patching.session_patch`` (the ``patch`` state) applies every patch with.

tests/js/json-patch-suite.test.mjs runs the same cases, prepared the same way, against the browser
client's static/sessions/jsonpatch.js, so both ends agree case by case:

- a case whose document and expected result are JSON objects runs as it is;
- a session's document is always a JSON object (docs/protocol.md, section 4), so a case on another
  document (an array, a scalar), or one that expects the whole document to become one, is refused
  on the server as it is (``invalid_data``), and runs on both ends with its document under the
  member ``"d"`` and each of its valid pointers prefixed with ``/d`` (an invalid pointer stays as
  it is, invalid): the same operations on the same values, one level down;
- the cases in exceptions.json end as that file says, on both ends (docs/protocol.md lists them).
"""

import json
from pathlib import Path
from typing import Any

import pytest

from sessions_app import documents, protocol
from sessions_app.protocol import ProtocolError

SUITE = Path(__file__).resolve().parent / "data" / "json_patch_tests"
EXCEPTIONS: dict[str, Any] = json.loads((SUITE / "exceptions.json").read_text())
_MISSING = object()


def load_cases() -> list[Any]:
    """Every case of tests.json and spec_tests.json (disabled ones too) as a pytest param."""
    params = []
    for name in ("tests.json", "spec_tests.json"):
        for index, case in enumerate(json.loads((SUITE / name).read_text())):
            params.append(pytest.param(case, id=f"{name}:{index}:{case.get('comment', '')[:50]}"))
    return params


def wrapped(case: dict[str, Any]) -> bool:
    """True for a case that needs the object wrapper: its document or its expected result is not an object."""
    return not isinstance(case["doc"], dict) or ("expected" in case and not isinstance(case["expected"], dict))


def prefixed(pointer: Any) -> Any:
    """A JSON Pointer one level down, under ``/d``; anything that is not a valid pointer unchanged."""
    if isinstance(pointer, str) and (pointer == "" or pointer.startswith("/")):
        return "/d" + pointer
    return pointer


def wrap(case: dict[str, Any]) -> dict[str, Any]:
    """The case with its document under ``"d"`` and its operations' pointers prefixed."""
    ops = []
    for op in case["patch"]:
        op = dict(op)
        for member in ("path", "from"):
            if member in op:
                op[member] = prefixed(op[member])
        ops.append(op)
    out = {**case, "doc": {"d": case["doc"]}, "patch": ops}
    if "expected" in case:
        out["expected"] = {"d": case["expected"]}
    return out


def server_apply(doc: dict[str, Any], ops: list[Any]) -> Any:
    """The document after the server's patch path, or the ProtocolError it raised."""
    try:
        return json.loads(documents.apply_patch_text(protocol.encode(doc), ops))
    except ProtocolError as refused:
        return refused


def check(case: dict[str, Any], outcome: Any) -> None:
    """Assert the suite's expectation (or exceptions.json's) of ``case`` holds for ``outcome``."""
    exception = EXCEPTIONS.get(case.get("comment", ""))
    if exception is not None:
        expected = exception["expected"]
        expected = {"d": expected} if wrapped(case) else expected
        assert outcome == expected
    elif "error" in case:
        assert isinstance(outcome, ProtocolError), f"applied, but the suite expects: {case['error']}"
        assert outcome.code == protocol.INVALID_DATA
    else:
        assert not isinstance(outcome, ProtocolError), outcome
        if "expected" in case:
            assert outcome == case["expected"]


@pytest.mark.parametrize("case", load_cases())
def test_the_servers_patch_path_passes_the_case(case):
    if wrapped(case):
        if isinstance(case["doc"], dict):
            refused = server_apply(case["doc"], case["patch"])
            assert isinstance(refused, ProtocolError) and refused.code == protocol.INVALID_DATA
        case = wrap(case)
    check(case, server_apply(case["doc"], case["patch"]))


def test_the_suite_is_all_there_and_some_cases_need_the_wrapper():
    cases = [param.values[0] for param in load_cases()]
    assert len(cases) == 112
    assert sum(wrapped(case) for case in cases) == 36
    assert {case.get("comment") for case in cases} >= set(EXCEPTIONS)


def test_a_document_that_is_not_an_object_is_refused_as_the_protocol_says():
    refused = server_apply({}, [{"op": "replace", "path": "", "value": []}])
    assert isinstance(refused, ProtocolError) and refused.code == protocol.INVALID_DATA
    assert "must be a JSON object" in refused.message


def test_every_exception_is_listed_in_the_protocol_document_with_its_reason():
    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    for comment in EXCEPTIONS:
        assert f"`{comment}`" in text, f"docs/protocol.md does not list the JSON Patch suite's case {comment!r}"
