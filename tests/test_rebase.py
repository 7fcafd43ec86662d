"""sessions_app/rebase.py: the shared cases, json0's convergence property (TP1), and random
schedules of concurrent patches from several clients through the server's rule."""

import copy
import json
import random
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_app import documents
from sessions_app.protocol import ProtocolError
from sessions_app.rebase import RebaseConflict, RebaseTooCostly, format_pointer, parse_pointer, rebase

CASES = json.loads((Path(__file__).parent / "rebase_cases.json").read_text())["cases"]


def after(document: dict[str, Any], changes: list[list[dict[str, Any]]]) -> dict[str, Any]:
    for ops in changes:
        document = jsonpatch.apply_patch(document, ops)
    return document


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_shared_case(case: dict[str, Any]) -> None:
    current = after(copy.deepcopy(case["base"]), case["changes"])
    if case["rebased"] == "conflict":
        with pytest.raises(RebaseConflict):
            rebase(case["ops"], case["changes"], lambda: current)
        return
    rebased = rebase(case["ops"], case["changes"], lambda: current)
    assert rebased == case["rebased"]
    assert jsonpatch.apply_patch(current, rebased) == case["final"]


def test_nothing_since_returns_the_operations_unchanged_and_never_reads_the_document() -> None:
    def unread() -> Any:
        raise AssertionError("read")

    ops = [{"op": "add", "path": "/a/0", "value": 1}, {"op": "move", "from": "/b", "path": "/c"}]
    assert rebase(ops, [], unread) == ops
    assert rebase(ops, [[{"op": "test", "path": "/a", "value": []}]], unread) == ops


def test_pointers_round_trip_with_escapes() -> None:
    assert parse_pointer("/a~1b/c~0d/") == ("a/b", "c~d", "")
    assert format_pointer(("a/b", "c~d", "")) == "/a~1b/c~0d/"
    for bad in ["a", "/a~2", "/a~", 5, None]:
        with pytest.raises(RebaseConflict):
            parse_pointer(bad)


def test_malformed_operations_are_a_conflict_not_a_crash() -> None:
    for op in [5, {"op": "nope", "path": "/a"}, {"op": "move", "path": "/a"}, {"path": "/a"}]:
        with pytest.raises(RebaseConflict):
            rebase([op], [[{"op": "add", "path": "/b", "value": 1}]], lambda: {"a": 1, "b": 1})


def test_the_work_is_bounded() -> None:
    changes = [[{"op": "add", "path": f"/k{i}", "value": i}] for i in range(200)]
    ops = [{"op": "add", "path": f"/m{i}", "value": i} for i in range(200)]
    with pytest.raises(RebaseTooCostly):
        rebase(ops, changes, lambda: {}, max_steps=10_000)
    assert len(rebase(ops, changes, lambda: {}, max_steps=1_000_000)) == 200


def test_a_rebase_that_cannot_fit_the_budget_is_refused_before_any_work() -> None:
    """60 changes of 250 operations since (a trial's case): a one-operation patch would cost at
    least 3 x 15,000 comparisons, over the default budget: refused without transforming anything
    (the document is never read, and no effect of the changes is computed)."""
    changes = [[{"op": "replace", "path": f"/items/{i}/t", "value": c} for i in range(250)] for c in range(60)]

    def document() -> Any:
        raise AssertionError("read the document")

    with pytest.raises(RebaseTooCostly):
        rebase([{"op": "replace", "path": "/items/0/done", "value": True}], changes, document)
    few = changes[:2]  # 500 operations since: 3 x 500 fits
    assert rebase([{"op": "add", "path": "/x", "value": 1}], few, lambda: {"items": []}) == [
        {"op": "add", "path": "/x", "value": 1}
    ]


# --- random documents and patches ----------------------------------------------------------------


def random_document(rng: random.Random) -> dict[str, Any]:
    items = [{"id": f"i{n}", "done": rng.random() < 0.5, "t": rng.choice("abc")} for n in range(rng.randint(0, 5))]
    return {"items": items, "meta": {k: rng.randint(0, 3) for k in rng.sample(["0", "1", "x", "y"], rng.randint(0, 3))}}


def random_intent(rng: random.Random, document: dict[str, Any], fresh: str) -> tuple[Any, ...]:
    """An edit described by ids (what a user means): ``(kind, target, value)``."""
    ids = [item["id"] for item in document["items"]]
    kinds = ["append", "meta"] + (["toggle", "text", "remove", "insert", "test"] if ids else [])
    kind = rng.choice(kinds) if rng.random() > 0.03 else "reset"
    if kind == "reset":
        return ("reset", None, random_document(rng))
    if kind == "append":
        return ("append", fresh, None)
    if kind == "meta":
        return ("meta", rng.choice(["0", "1", "x", "y", "z"]), rng.randint(0, 9))
    return (kind, rng.choice(ids), fresh if kind == "insert" else rng.randint(0, 9))


def intent_ops(document: dict[str, Any], intent: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The RFC 6902 operations of ``intent`` on ``document`` (what a client sends)."""
    kind, target, value = intent
    if kind == "reset":
        return [{"op": "replace", "path": "", "value": value}]
    if kind == "append":
        return [{"op": "add", "path": "/items/-", "value": {"id": target, "done": False, "t": "n"}}]
    if kind == "meta":
        op = "replace" if target in document["meta"] else "add"
        return [{"op": op, "path": f"/meta/{target}", "value": value}]
    index = [item["id"] for item in document["items"]].index(target)
    if kind == "toggle":
        return [{"op": "replace", "path": f"/items/{index}/done", "value": value % 2 == 0}]
    if kind == "text":
        return [{"op": "replace", "path": f"/items/{index}/t", "value": str(value)}]
    if kind == "remove":
        return [{"op": "remove", "path": f"/items/{index}"}]
    if kind == "test":
        return [{"op": "test", "path": f"/items/{index}", "value": document["items"][index]}]
    return [{"op": "add", "path": f"/items/{index}", "value": {"id": value, "done": False, "t": "i"}}]


def random_patch(rng: random.Random, document: dict[str, Any], counter: list[int]) -> tuple[list[Any], list[Any]]:
    """1-3 intents and their operations, each made on the document after the ones before."""
    intents, ops = [], []
    for _ in range(rng.randint(1, 3)):
        counter[0] += 1
        intent = random_intent(rng, document, f"n{counter[0]}")
        made = intent_ops(document, intent)
        document = jsonpatch.apply_patch(document, made)
        intents.append(intent)
        ops.extend(made)
    return intents, ops


def touches(intent: tuple[Any, ...]) -> set[tuple[str, str]]:
    kind, target, _ = intent
    if kind == "reset":
        return {("", "*")}  # the whole document
    if kind == "meta":
        return {("meta", target)}
    if kind in ("toggle", "text", "remove", "test"):
        return {(target, {"toggle": "done", "text": "t"}.get(kind, "*"))}
    return set()


def collide(mine: list[Any], theirs: list[Any]) -> bool:
    """Whether two lists of intents really overlap: the same field, or anything and a removal
    or a test of the same item."""
    a = set().union(*map(touches, mine)) if mine else set()
    b = set().union(*map(touches, theirs)) if theirs else set()
    if ("", "*") in a | b:
        return True  # a whole-document replace collides with everything
    for target, field in a:
        for other, other_field in b:
            if target == other and (field == other_field or "*" in (field, other_field)):
                return True
    return False


def without(document: dict[str, Any], ids: set[str]) -> dict[str, Any]:
    return {**document, "items": [item for item in document["items"] if item["id"] not in ids]}


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_both_orders_converge_json0_tp1(seed: int) -> None:
    """For two patches made on one document, ``A`` then ``B`` rebased equals ``B`` then ``A``
    rebased, whenever neither collides (json0's TP1; ties go left one way, right the other).
    Appends (``-``) are the exception by design: both land, in the order the server took them
    (json0 has no append; its inserts name an index), so with an append on each side only the
    appended items' order may differ."""
    rng = random.Random(seed)
    base = random_document(rng)
    counter = [0]
    _, a = random_patch(rng, copy.deepcopy(base), counter)
    _, b = random_patch(rng, copy.deepcopy(base), counter)
    after_a, after_b = jsonpatch.apply_patch(base, a), jsonpatch.apply_patch(base, b)
    try:
        b_after_a = rebase(b, [a], lambda: after_a, left=True)
        a_after_b = rebase(a, [b], lambda: after_b, left=False)
    except RebaseConflict:
        return
    one, other = jsonpatch.apply_patch(after_a, b_after_a), jsonpatch.apply_patch(after_b, a_after_b)
    if any(op["path"] == "/items/-" for op in a) and any(op["path"] == "/items/-" for op in b):
        key = lambda document: sorted(json.dumps(item, sort_keys=True) for item in document["items"])  # noqa: E731
        assert key(one) == key(other) and one["meta"] == other["meta"]
    else:
        assert one == other


class Server:
    """The server's rule without the database: a patch on version ``v`` is rebased on the changes
    since, applied with documents.apply_patch, and logged with its applied operations."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.initial = copy.deepcopy(document)
        self.document = document
        self.log: list[list[Any]] = []  # applied operations, log[n] took version n to n + 1
        self.intents: list[list[Any]] = []
        self.history = [copy.deepcopy(document)]

    def patch(self, version: int, intents: list[Any], ops: list[Any]) -> list[Any]:
        since = self.log[version:]
        applied = rebase(ops, since, lambda: self.document) if since else ops
        self.document = documents.apply_patch(copy.deepcopy(self.document), applied)
        self.log.append(applied)
        self.intents.append(intents)
        self.history.append(copy.deepcopy(self.document))
        return applied


def expected(document: dict[str, Any], intents: list[Any]) -> tuple[dict[str, Any], set[str]]:
    """``intents`` applied by id to ``document``, and the ids of the items they inserted that are
    still there (their place among the items is checked apart: json0 puts an insert made at
    the same index meanwhile after it, so "just before its anchor" is not exact)."""
    inserted = set()
    for intent in intents:
        if intent[0] in ("insert", "append"):
            inserted.add(intent[2] if intent[0] == "insert" else intent[1])
        if intent[0] == "insert" and intent[1] not in [item["id"] for item in document["items"]]:
            intent = ("append", intent[2], None)  # its anchor was removed meanwhile: no collision
        if intent[0] != "test":
            document = jsonpatch.apply_patch(document, intent_ops(document, intent))
    return document, {item["id"] for item in document["items"] if item["id"] in inserted}


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_schedules_converge_and_keep_every_intent(seed: int) -> None:
    """Three clients patch on random older versions of a random small document. Each patch the
    server accepts does exactly what its author meant (the intents by id, applied to the current
    document), each conflict is a real collision with a change since, the stored document is the
    initial one with the applied operations in order, and every client converges to it."""
    rng = random.Random(seed)
    server = Server(random_document(rng))
    counter = [0]
    clients = [0, 0, 0]  # the version each client has seen
    conflicts = 0
    for _ in range(rng.randint(2, 8)):
        who = rng.randrange(len(clients))
        clients[who] = rng.randint(clients[who], len(server.log))  # it caught up to some version
        version = clients[who]
        intents, ops = random_patch(rng, copy.deepcopy(server.history[version]), counter)
        before = copy.deepcopy(server.document)
        try:
            server.patch(version, intents, ops)
        except (RebaseConflict, ProtocolError) as exc:
            since = server.intents[version:]
            if isinstance(exc, RebaseConflict) and exc.reason == "/items changed length since":
                # The one conservative rule: an append, then an index into the same array.
                first = next(n for n, op in enumerate(ops) if op["path"] == "/items/-")
                assert any(op["path"].startswith("/items/") for op in ops[first + 1 :]), ops
            else:
                assert collide(intents, [i for change in since for i in change]), (exc, intents, since)
            conflicts += 1
            continue
        clients[who] = len(server.log)
        want, inserted = expected(before, intents)
        got = server.document
        assert without(got, inserted) == without(want, inserted)
        ids = [item["id"] for item in got["items"]]
        assert inserted <= set(ids)
        for kind, anchor, new in intents:
            if kind == "insert" and new in ids and anchor in ids:
                assert ids.index(new) < ids.index(anchor)  # still before its anchor
    replayed = copy.deepcopy(server.initial)
    for applied in server.log:
        replayed = jsonpatch.apply_patch(replayed, applied)
    assert replayed == server.document
    # Every client catches up from its version with the applied operations and gets the same.
    for version in clients:
        copy_of = copy.deepcopy(server.history[version])
        for applied in server.log[version:]:
            copy_of = jsonpatch.apply_patch(copy_of, applied)
        assert copy_of == server.document
