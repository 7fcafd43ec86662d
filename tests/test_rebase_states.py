"""A stale ``patch`` through the consumer (docs/protocol.md, section 7, "Rebase"): rebased when it
does not collide, with the applied operations in the reply, the others' ``patched`` push and the
change log; ``conflict`` when it does. In-memory layer, SQLite; the patch worker path too."""

from typing import Any

import pytest
from django.test import override_settings

from sessions_app import protocol
from tests.utils import connected, make_user

pytestmark = pytest.mark.django_db(transaction=True)

ITEMS = {"items": [{"id": "a", "done": False}, {"id": "b", "done": False}, {"id": "c", "done": False}]}


async def two_editors(alice: Any, a: Any, b: Any, data: dict[str, Any]) -> str:
    await make_user("bob")
    snap = await a.ok("create", {"title": "Checklist", "data": data})
    await a.ok("invite", {"username": "bob", "role": "editor"})
    await b.ok("join", {"session": snap["id"]})
    return snap["id"]


def tick(index: int) -> list[dict[str, Any]]:
    return [
        {"op": "test", "path": f"/items/{index}/id", "value": "abc"[index]},
        {"op": "replace", "path": f"/items/{index}/done", "value": True},
    ]


@pytest.mark.parametrize("inline_bytes", [65536, 10], ids=["in the database hop", "in a patch worker"])
async def test_two_editors_ticking_different_items_on_one_version_both_land(alice: Any, inline_bytes: int) -> None:
    with override_settings(SESSIONS_PATCH_INLINE_BYTES=inline_bytes):
        bob = await make_user("bob")
        async with connected(alice) as a, connected(bob) as b:
            session = await two_editors(alice, a, b, ITEMS)
            assert await a.ok("patch", {"version": 0, "ops": tick(0)}) == {"version": 1}
            reply = await b.ok("patch", {"version": 0, "ops": tick(2)})
            # Nothing moved: the operations as applied are the ones sent, and they are said.
            assert reply == {"version": 2, "rebased": True, "ops": tick(2)}
            pushed = await a.push("patched")
            assert pushed["data"]["version"] == 2 and pushed["data"]["ops"] == tick(2)
            assert (await b.push("patched"))["data"]["version"] == 1  # alice's, after bob's reply
            snap = await a.ok("join", {"session": session})
            assert [item["done"] for item in snap["data"]["items"]] == [True, False, True]


async def test_a_stale_patch_is_moved_past_an_insert_and_join_since_replays_what_was_applied(alice: Any) -> None:
    bob = await make_user("bob")
    async with connected(alice) as a, connected(bob) as b:
        session = await two_editors(alice, a, b, ITEMS)
        new = {"id": "n", "done": False}
        await a.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/items/0", "value": new}]})
        reply = await b.ok("patch", {"version": 0, "ops": tick(1)})
        moved = [
            {"op": "test", "path": "/items/2/id", "value": "b"},
            {"op": "replace", "path": "/items/2/done", "value": True},
        ]
        assert reply == {"version": 2, "rebased": True, "ops": moved}
        assert (await a.push("patched"))["data"]["ops"] == moved
        caught_up = await a.ok("join", {"session": session, "since": 0})
        assert [change["ops"] for change in caught_up["changes"]] == [
            [{"op": "add", "path": "/items/0", "value": new}],
            moved,
        ]


async def test_a_stale_patch_that_collides_is_a_conflict_and_changes_nothing(alice: Any) -> None:
    bob = await make_user("bob")
    async with connected(alice) as a, connected(bob) as b:
        session = await two_editors(alice, a, b, ITEMS)
        await a.ok("patch", {"version": 0, "ops": [{"op": "remove", "path": "/items/1"}]})
        reply = await b.request("patch", {"version": 0, "ops": tick(1)})
        assert reply["state"] == "error" and reply["code"] == protocol.CONFLICT
        assert reply["data"] == {"version": 1}
        # The item is gone, so nothing was changed; ticking another one on the new version lands.
        retick = [{"op": "replace", "path": "/items/1/done", "value": True}]
        assert await b.ok("patch", {"version": 1, "ops": retick}) == {"version": 2}
        snap = await b.ok("join", {"session": session})
        assert snap["version"] == 2 and snap["data"]["items"] == [{"id": "a", "done": False}, {"id": "c", "done": True}]


async def test_a_test_on_a_value_changed_since_is_a_conflict(alice: Any) -> None:
    bob = await make_user("bob")
    async with connected(alice) as a, connected(bob) as b:
        await two_editors(alice, a, b, ITEMS)
        await a.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/items/0/done", "value": True}]})
        insist = [{"op": "test", "path": "/items/0", "value": {"id": "a", "done": False}}]
        reply = await b.request("patch", {"version": 0, "ops": insist + tick(2)})
        assert reply["code"] == protocol.CONFLICT and reply["data"] == {"version": 1}


async def test_a_shifted_test_that_fails_on_the_current_document_is_a_conflict(alice: Any) -> None:
    """A rebased patch that does not apply is ``conflict`` (issue 15: "a failed test against the
    current document"); sent again on the current version, the same wrong ``test`` is
    ``invalid_data``."""
    bob = await make_user("bob")
    async with connected(alice) as a, connected(bob) as b:
        await two_editors(alice, a, b, ITEMS)
        await a.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/items/0", "value": {"id": "n"}}]})
        wrong = [{"op": "test", "path": "/items/0/id", "value": "zzz"}]  # wrong on version 0 already
        reply = await b.request("patch", {"version": 0, "ops": wrong})
        assert reply["code"] == protocol.CONFLICT and "test failed" in reply["error"], reply
        again = await b.request("patch", {"version": reply["data"]["version"], "ops": wrong})
        assert again["code"] == protocol.INVALID_DATA and "test failed" in again["error"]


async def test_two_appends_on_one_version_both_land_in_the_servers_order(alice: Any) -> None:
    bob = await make_user("bob")
    async with connected(alice) as a, connected(bob) as b:
        session = await two_editors(alice, a, b, {"items": []})
        await a.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/items/-", "value": "milk"}]})
        reply = await b.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/items/-", "value": "eggs"}]})
        assert reply["version"] == 2 and reply["rebased"] is True
        assert (await a.ok("join", {"session": session}))["data"] == {"items": ["milk", "eggs"]}


@override_settings(SESSIONS_REBASE_MAX_CHANGES=1)
async def test_a_patch_further_behind_than_the_bound_conflicts(alice: Any) -> None:
    bob = await make_user("bob")
    async with connected(alice) as a, connected(bob) as b:
        await two_editors(alice, a, b, {"n": 0, "m": 0})
        await a.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/n", "value": 1}]})
        await a.ok("patch", {"version": 1, "ops": [{"op": "replace", "path": "/n", "value": 2}]})
        reply = await b.request("patch", {"version": 0, "ops": [{"op": "replace", "path": "/m", "value": 1}]})
        assert reply["code"] == protocol.CONFLICT and reply["data"] == {"version": 2}
        assert (await b.ok("patch", {"version": 1, "ops": [{"op": "replace", "path": "/m", "value": 1}]}))[
            "version"
        ] == 3


async def test_a_patch_sent_again_with_its_key_is_not_applied_twice(alice: Any) -> None:
    bob = await make_user("bob")
    async with connected(alice) as a, connected(bob) as b:
        session = await two_editors(alice, a, b, {"items": []})
        milk = [{"op": "add", "path": "/items/-", "value": "milk"}]
        assert await b.ok("patch", {"version": 0, "ops": milk, "key": "k-1"}) == {"version": 1}
        await a.ok("patch", {"version": 1, "ops": [{"op": "add", "path": "/items/-", "value": "eggs"}]})
        # Its reply lost, bob sends it again (on the version it was made on, or a later one):
        # without the key, the append would be rebased and applied a second time.
        for version in (0, 2):
            again = await b.ok("patch", {"version": version, "ops": milk, "key": "k-1"})
            assert again == {"version": 1, "duplicate": True, "ops": milk}
        # The key is bob's: alice's patch with the same key is another patch.
        assert (await a.ok("patch", {"version": 2, "ops": milk, "key": "k-1"}))["version"] == 3
        snap = await a.ok("join", {"session": session})
        assert snap["data"] == {"items": ["milk", "eggs", "milk"]}
        for bad in ["", "x" * 65, "a b", 5]:
            reply = await b.request("patch", {"version": 3, "ops": milk, "key": bad})
            assert reply["code"] == protocol.INVALID_DATA and "key" in reply["errors"], reply


@pytest.mark.parametrize("inline_bytes", [65536, 10], ids=["in the database hop", "in a patch worker"])
async def test_a_rebased_patch_that_no_longer_applies_is_a_conflict_not_invalid_data(
    alice: Any, inline_bytes: int
) -> None:
    """A trial's case: alice moves /items/1 out of the list; bob, on version 0, moves /items/0
    into (what was then) /items/1. Valid where bob made it; after alice's change it would move an
    item into its own child: ``conflict`` (bob's client re-reads and decides), not ``invalid_data``
    (which says the patch itself is wrong)."""
    with override_settings(SESSIONS_PATCH_INLINE_BYTES=inline_bytes):
        bob = await make_user("bob")
        async with connected(alice) as a, connected(bob) as b:
            await two_editors(alice, a, b, {"items": [{"id": "x"}, {"id": "y"}, {"id": "z"}]})
            assert await a.ok("patch", {"version": 0, "ops": [{"op": "move", "from": "/items/1", "path": "/o"}]})
            reply = await b.request(
                "patch", {"version": 0, "ops": [{"op": "move", "from": "/items/0", "path": "/items/1/inner"}]}
            )
            assert reply["state"] == "error" and reply["code"] == protocol.CONFLICT, reply
            assert reply["data"] == {"version": 1}
            assert await b.ok("ping") is not None  # the connection goes on
