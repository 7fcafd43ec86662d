"""The history states (issue 12, item 4): ``revisions``, ``revision`` and ``restore``, through
``project.asgi.application`` on the in-memory layer (SQLite), and history.py's reads as plain calls."""

import datetime
import json
from typing import Any

import jsonpatch
import pytest
from channels.db import database_sync_to_async

from sessions_app import history, protocol
from sessions_app.models import Change, Session
from sessions_app.protocol import ProtocolError
from tests.test_session_states import error, shared_session, who
from tests.utils import connected, make_user

pytestmark = pytest.mark.django_db(transaction=True)

REVISION_KEYS = {"number", "version", "message", "size", "by", "at"}
CHANGE_KEYS = {"version", "by", "at", "op_count", "ops"}


def add(path: str, value: Any) -> list[dict[str, Any]]:
    return [{"op": "add", "path": path, "value": value}]


async def save(user: Any, session_id: str, message: str = "") -> dict[str, Any]:
    """Record a revision of the session on a connection of its own (``save`` closes it)."""
    async with connected(user) as client:
        await client.ok("join", {"session": session_id})
        reply = await client.ok("save", {"message": message})
        assert await client.closed() == 1000
    return reply


def iso(text: str) -> datetime.datetime:
    assert text.endswith("Z"), text
    return datetime.datetime.fromisoformat(text)


async def document_of(session_id: str) -> dict[str, Any]:
    return await database_sync_to_async(lambda: Session.objects.get(pk=session_id).data)()


# --- revisions -----------------------------------------------------------------------------------


async def test_revisions_lists_revisions_and_changes_newest_first_with_who_and_when(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    async with connected(alice) as owner:
        await owner.ok("join", {"session": session_id})
        await owner.ok("patch", {"version": 0, "ops": add("/items/-", "milk")})
    assert await save(alice, session_id, "first list") == {"revision": 1, "version": 1}
    async with connected(bob) as editor:
        await editor.ok("join", {"session": session_id})
        await editor.ok("patch", {"version": 1, "ops": [{"op": "replace", "path": "/items/0", "value": "oat milk"}]})
    assert await save(bob, session_id) == {"revision": 2, "version": 2}

    async with connected(bob) as client:
        await client.ok("join", {"session": session_id})
        page = await client.ok("revisions")

    assert set(page) == {"session", "version", "revisions", "more_revisions", "changes", "more_changes"}
    assert (page["session"], page["version"], page["more_revisions"], page["more_changes"]) == (
        session_id,
        2,
        False,
        False,
    )
    assert [set(r) for r in page["revisions"]] == [REVISION_KEYS] * 2
    newest, oldest = page["revisions"]
    assert (newest["number"], newest["version"], newest["message"], newest["by"]) == (2, 2, "", who(bob))
    assert (oldest["number"], oldest["version"], oldest["message"], oldest["by"]) == (1, 1, "first list", who(alice))
    assert oldest["size"] == len(protocol.encode({"items": ["milk"]}).encode())  # as the patch stored it
    assert iso(newest["at"]) >= iso(oldest["at"])
    assert page["changes"] == [
        {
            "version": 2,
            "by": who(bob),
            "at": page["changes"][0]["at"],
            "op_count": 1,
            "ops": [{"op": "replace", "path": "/items/0", "value": '"oat milk"'}],
        },
        {
            "version": 1,
            "by": who(alice),
            "at": page["changes"][1]["at"],
            "op_count": 1,
            "ops": [{"op": "add", "path": "/items/-", "value": '"milk"'}],
        },
    ]
    assert iso(page["changes"][0]["at"]) >= iso(page["changes"][1]["at"])


async def test_a_viewer_lists_and_views_revisions(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="viewer")
    await save(alice, session_id, "empty")
    async with connected(bob) as client:
        await client.ok("join", {"session": session_id})
        page = await client.ok("revisions")
        assert [r["number"] for r in page["revisions"]] == [1]
        view = await client.ok("revision", {"number": 1})
    assert view == {
        "session": session_id,
        "number": 1,
        "version": 0,
        "message": "empty",
        "size": view["size"],
        "by": who(alice),
        "at": page["revisions"][0]["at"],
        "data": {"items": []},
    }


async def test_history_states_need_a_joined_session_before_their_data_is_validated(alice: Any) -> None:
    async with connected(alice) as client:
        for state, data in (("revisions", {}), ("revision", {"number": "x"}), ("restore", {})):
            assert (await error(client, state, data))["code"] == "not_joined"


async def test_a_removed_member_cannot_read_the_history(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    await save(alice, session_id)
    async with connected(alice) as owner, connected(bob) as client:
        await owner.ok("join", {"session": session_id})
        await client.ok("join", {"session": session_id})
        await owner.ok("remove", {"username": "bob"})
        await client.push("session_removed")
        for state, data in (("revisions", {}), ("revision", {"number": 1}), ("restore", {"number": 1, "version": 0})):
            assert (await error(client, state, data))["code"] == "not_joined"


def test_history_reads_refuse_a_user_who_is_not_a_member(django_user_model: Any) -> None:
    owner = django_user_model.objects.create(username="owner")
    stranger = django_user_model.objects.create(username="stranger")
    session = Session.objects.create(title="Private", owner=owner)
    session.memberships.create(user=owner, role="owner")
    session.revisions.create(number=1, version=0, data={}, size=2)
    with pytest.raises(ProtocolError) as page:
        history.history_page(user_id=stranger.pk, session_id=session.pk, before=None, changes_before=None, limit=20)
    with pytest.raises(ProtocolError) as view:
        history.revision_get(user_id=stranger.pk, session_id=session.pk, number=1)
    with pytest.raises(ProtocolError) as base:
        history.restore_base(user={"id": stranger.pk}, session_id=session.pk, number=1, version=0)
    assert page.value.code == view.value.code == base.value.code == protocol.NOT_FOUND


def test_a_deleted_author_is_shown_as_nobody(django_user_model: Any) -> None:
    owner = django_user_model.objects.create(username="owner")
    gone = django_user_model.objects.create(username="gone")
    session = Session.objects.create(title="S", owner=owner, version=1)
    session.memberships.create(user=owner, role="owner")
    session.revisions.create(number=1, version=1, data={}, size=2, author=gone)
    Change.objects.create(session=session, version=1, ops=add("/a", 1), author=gone)
    gone.delete()
    page = history.history_page(user_id=owner.pk, session_id=session.pk, before=None, changes_before=None, limit=20)
    assert page["revisions"][0]["by"] is None
    assert page["changes"][0]["by"] is None


@pytest.mark.parametrize(
    "data",
    [
        {"limit": 0},
        {"limit": 51},
        {"limit": "5"},
        {"limit": True},
        {"before": 0},
        {"before": 1.5},
        {"changes_before": -1},
        {"changes_before": "3"},
    ],
)
async def test_revisions_with_invalid_data_is_invalid_data(alice: Any, data: dict[str, Any]) -> None:
    async with connected(alice) as client:
        await client.ok("create", {"title": "S"})
        assert (await error(client, "revisions", data))["code"] == "invalid_data"
        assert "server_time" in await client.ok("ping")


async def test_revisions_pages_with_limit_and_before(alice: Any) -> None:
    async with connected(alice) as client:
        session_id = (await client.ok("create", {"title": "Long", "data": {"n": 0}}))["id"]
        for version in range(7):
            await client.ok(
                "patch", {"version": version, "ops": [{"op": "replace", "path": "/n", "value": version + 1}]}
            )
    for _ in range(5):
        await save(alice, session_id)
    async with connected(alice) as client:
        await client.ok("join", {"session": session_id})
        first = await client.ok("revisions", {"limit": 2})
        assert [r["number"] for r in first["revisions"]] == [5, 4]
        assert [c["version"] for c in first["changes"]] == [7, 6]
        assert first["more_revisions"] and first["more_changes"]
        second = await client.ok("revisions", {"limit": 2, "before": 4, "changes_before": 6})
        assert [r["number"] for r in second["revisions"]] == [3, 2]
        assert [c["version"] for c in second["changes"]] == [5, 4]
        last = await client.ok("revisions", {"limit": 3, "before": 2, "changes_before": 3})
        assert [r["number"] for r in last["revisions"]] == [1]
        assert [c["version"] for c in last["changes"]] == [2, 1]
        assert not last["more_revisions"] and not last["more_changes"]
        everything = await client.ok("revisions", {"limit": 50})
        assert len(everything["revisions"]) == 5 and len(everything["changes"]) == 7


async def test_a_change_is_summarised_by_its_first_operations_with_values_and_paths_cut(alice: Any) -> None:
    long_key = "k" * 300
    ops = [{"op": "add", "path": f"/{long_key}{i}", "value": "v" * 1000} for i in range(8)]
    ops.append({"op": "move", "from": f"/{long_key}0", "path": "/moved"})
    async with connected(alice) as client:
        await client.ok("create", {"title": "Wide", "data": {"nested": {"list": [1, 2]}}})
        await client.ok("patch", {"version": 0, "ops": ops})
        await client.ok("patch", {"version": 1, "ops": [{"op": "copy", "from": "/nested", "path": "/copy"}]})
        await client.ok("patch", {"version": 2, "ops": add("/obj", {"a": [1, 2, 3], "b": "x" * 300})})
        changes = (await client.ok("revisions"))["changes"]

    obj, copy, wide = changes
    assert (wide["op_count"], len(wide["ops"])) == (9, history.SUMMARY_OPS)
    first = wide["ops"][0]
    assert first["op"] == "add"
    assert len(first["path"]) == history.SUMMARY_CHARS and first["path"].endswith("…")
    assert first["path"].startswith("/kkk")
    assert first["value"] == '"' + "v" * (history.PREVIEW_CHARS - 2) + "…"
    assert copy["ops"] == [{"op": "copy", "path": "/copy", "from": "/nested"}]
    cut = '{"a":[1,2,3],"b":"' + "x" * (history.PREVIEW_CHARS - 19) + "…"
    assert obj["ops"] == [{"op": "add", "path": "/obj", "value": cut}]
    assert len(obj["ops"][0]["value"]) == history.PREVIEW_CHARS


async def test_a_page_fits_in_the_frame_size_the_server_accepts(alice: Any, settings: Any) -> None:
    settings.SESSIONS_MAX_MESSAGE_BYTES = 4096
    async with connected(alice) as client:
        session_id = (await client.ok("create", {"title": "Notes", "data": {}}))["id"]
        for version in range(12):
            await client.ok("patch", {"version": version, "ops": add(f"/{'p' * 90}{version}", "ü" * 60)})
    for _ in range(6):
        await save(alice, session_id, "é" * 500)  # 1,000 bytes of message each

    async with connected(alice) as client:
        await client.ok("join", {"session": session_id})
        await client.send({"state": "revisions", "data": {"limit": 50}, "id": "x" * 64})
        text = await client.ws.receive_from()
    frame = json.loads(text)
    assert len(text.encode()) <= 4096, len(text.encode())
    page = frame["data"]
    assert 1 <= len(page["revisions"]) < 6 and page["more_revisions"]
    assert 1 <= len(page["changes"]) < 12 and page["more_changes"]
    assert page["revisions"][0]["message"] == "é" * 500  # messages are never cut, only left for the next page


# --- revision ------------------------------------------------------------------------------------


async def test_revision_returns_the_saved_document_and_not_found_for_an_unknown_number(alice: Any) -> None:
    data = {"items": [{"id": "a1", "text": "Milk", "done": True}], "zero": 0, "big": 12345678901234567890123}
    async with connected(alice) as client:
        session_id = (await client.ok("create", {"title": "S", "data": data}))["id"]
    await save(alice, session_id, "kept")
    async with connected(alice) as client:
        await client.ok("join", {"session": session_id})
        await client.ok("patch", {"version": 0, "ops": [{"op": "remove", "path": "/items/0"}]})
        view = await client.ok("revision", {"number": 1})
        assert (view["number"], view["version"], view["message"], view["data"]) == (1, 0, "kept", data)
        missing = await error(client, "revision", {"number": 2})
        assert missing["code"] == "not_found"
        for bad in ({}, {"number": 0}, {"number": "1"}, {"number": None}):
            assert (await error(client, "revision", bad))["code"] == "invalid_data"


# --- restore -------------------------------------------------------------------------------------


async def edited_after_a_revision(owner: Any, session_id: str) -> dict[str, Any]:
    """Revision 1 of the session holds two items; the document then changes three times (to
    version 5). Returns revision 1's document."""
    first = {"items": [{"id": "a", "text": "Milk", "done": False}, {"id": "b", "text": "Eggs", "done": False}]}
    async with connected(owner) as client:
        await client.ok("join", {"session": session_id})
        await client.ok("patch", {"version": 0, "ops": add("/items/-", first["items"][0])})
        await client.ok("patch", {"version": 1, "ops": add("/items/-", first["items"][1])})
    await save(owner, session_id, "two items")
    async with connected(owner) as client:
        await client.ok("join", {"session": session_id})
        await client.ok("patch", {"version": 2, "ops": [{"op": "replace", "path": "/items/0/done", "value": True}]})
        await client.ok("patch", {"version": 3, "ops": [{"op": "remove", "path": "/items/1"}]})
        await client.ok("patch", {"version": 4, "ops": add("/items/-", {"id": "c", "text": "Tea", "done": False})})
    return first


async def test_restore_makes_the_document_equal_to_the_revision_as_one_new_change(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    first = await edited_after_a_revision(alice, session_id)
    before = await document_of(session_id)

    async with connected(alice) as owner, connected(bob) as other:
        await owner.ok("join", {"session": session_id})
        await other.ok("join", {"session": session_id})
        reply = await owner.ok("restore", {"number": 1, "version": 5})

        assert (reply["version"], reply["revision"]) == (6, 1)
        assert jsonpatch.apply_patch(before, reply["ops"]) == first  # the caller's copy follows
        pushed = (await other.push("patched"))["data"]
        assert pushed == {"session": session_id, "version": 6, "ops": reply["ops"], "by": who(alice), "restored": 1}
        assert await owner.nothing()  # not pushed back to the restorer
        assert (await owner.ok("join", {"session": session_id}))["data"] == first

        # One change, in the log like any patch: `join since` replays it, the history names it.
        replay = await other.ok("join", {"session": session_id, "since": 5})
        assert [(c["version"], c["ops"], c["by"]) for c in replay["changes"]] == [(6, reply["ops"], who(alice))]
        latest = (await other.ok("revisions"))["changes"][0]
        assert (latest["version"], latest["by"], latest["restored"]) == (6, who(alice), 1)
        assert latest["op_count"] == len(reply["ops"])

        # Nothing is lost: the state before the restore is still in the log, and after a save it
        # can be restored in turn, by an editor.
        await other.ok("patch", {"version": 6, "ops": add("/items/-", {"id": "d", "text": "Jam", "done": False})})
    stored = await database_sync_to_async(lambda: list(Change.objects.order_by("version").values_list("restored")))()
    assert stored == [(None,)] * 5 + [(1,), (None,)]
    await save(alice, session_id, "with jam")
    jam = await document_of(session_id)
    async with connected(bob) as editor:
        await editor.ok("join", {"session": session_id})
        await editor.ok("restore", {"number": 1, "version": 7})
        assert (await editor.ok("join", {"session": session_id}))["data"] == first
        assert (await editor.ok("restore", {"number": 2, "version": 8}))["version"] == 9
        assert (await editor.ok("join", {"session": session_id}))["data"] == jam


async def test_restore_by_a_viewer_is_permission_denied_even_on_an_old_version(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="viewer")
    await edited_after_a_revision(alice, session_id)
    async with connected(bob) as client:
        await client.ok("join", {"session": session_id})
        for version in (5, 0, 99):
            assert (await error(client, "restore", {"number": 1, "version": version}))["code"] == "permission_denied"
        assert (await error(client, "restore", {"number": 7, "version": 5}))["code"] == "permission_denied"
    assert (await document_of(session_id))["items"][-1]["text"] == "Tea"


async def test_restore_of_an_unknown_revision_is_not_found(alice: Any) -> None:
    async with connected(alice) as client:
        await client.ok("create", {"title": "S", "data": {"a": 1}})
        refused = await error(client, "restore", {"number": 1, "version": 0})
        assert refused["code"] == "not_found"
        assert "server_time" in await client.ok("ping")


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"number": 1},
        {"version": 0},
        {"number": 0, "version": 0},
        {"number": 1, "version": -1},
        {"number": "1", "version": 0},
    ],
)
async def test_restore_with_invalid_data_is_invalid_data(alice: Any, data: dict[str, Any]) -> None:
    async with connected(alice) as client:
        await client.ok("create", {"title": "S"})
        assert (await error(client, "restore", data))["code"] == "invalid_data"


async def test_restore_on_a_stale_version_conflicts_and_changes_nothing(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    await edited_after_a_revision(alice, session_id)
    async with connected(alice) as owner, connected(bob) as other:
        await owner.ok("join", {"session": session_id})
        await other.ok("join", {"session": session_id})
        await other.ok("patch", {"version": 5, "ops": add("/note", "bob was here")})
        await owner.push("patched")
        # Older than what this connection has seen: answered at once.
        stale = await error(owner, "restore", {"number": 1, "version": 5})
        assert (stale["code"], stale["data"]) == ("conflict", {"version": 6})
        # A version the connection has not seen, the database's check: also a conflict.
        ahead = await error(owner, "restore", {"number": 1, "version": 9})
        assert (ahead["code"], ahead["data"]) == ("conflict", {"version": 6})
        assert await other.nothing()
    assert (await document_of(session_id))["note"] == "bob was here"
    assert await database_sync_to_async(Change.objects.filter(restored__isnull=False).count)() == 0


async def test_restore_of_a_revision_equal_to_the_document_changes_nothing(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    await save(alice, session_id)
    async with connected(alice) as owner, connected(bob) as other:
        await owner.ok("join", {"session": session_id})
        await other.ok("join", {"session": session_id})
        assert await owner.ok("restore", {"number": 1, "version": 0}) == {"version": 0, "revision": 1, "ops": []}
        assert await other.nothing()
    assert await database_sync_to_async(Change.objects.count)() == 0


async def test_a_restore_whose_diff_is_larger_than_the_revision_replaces_the_document(alice: Any, bob: Any) -> None:
    old = {"items": [f"old entry {i}" for i in range(300)]}
    new = {"items": [f"new {i}" for i in range(300)]}
    async with connected(alice) as client:
        session_id = (await client.ok("create", {"title": "S", "data": new}))["id"]
        await client.ok("invite", {"username": (await make_user("bob")).username, "role": "editor"})
    await save(alice, session_id)
    async with connected(alice) as owner, connected(bob) as other:
        await owner.ok("join", {"session": session_id})
        await other.ok("join", {"session": session_id})
        await owner.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/items", "value": old["items"]}]})
        await other.push("patched")
        reply = await owner.ok("restore", {"number": 1, "version": 1})
        assert reply["ops"] == [{"op": "replace", "path": "", "value": new}]
        assert (await other.push("patched"))["data"]["ops"] == reply["ops"]
    assert await document_of(session_id) == new


async def test_a_restore_whose_diff_is_over_its_work_budget_replaces_the_document(alice: Any, settings: Any) -> None:
    settings.SESSIONS_PATCH_WORK_MIN = 0
    settings.SESSIONS_PATCH_WORK_PER_BYTE = 1
    revision = {"items": list(range(9000))}
    async with connected(alice) as client:
        session_id = (await client.ok("create", {"title": "S", "data": revision}))["id"]
    await save(alice, session_id)
    async with connected(alice) as client:
        await client.ok("join", {"session": session_id})
        # Inserting at the head shifts 9,000 elements: 140 nodes, past this tiny patch's budget.
        ops = add("/items/0", -1)
        assert (await error(client, "patch", {"version": 0, "ops": ops}))["code"] == "patch_too_costly"
        settings.SESSIONS_PATCH_WORK_PER_BYTE = 8
        await client.ok("patch", {"version": 0, "ops": ops})
        settings.SESSIONS_PATCH_WORK_PER_BYTE = 1
        # Its inverse (remove /items/0) is as costly; the whole document is within budget.
        reply = await client.ok("restore", {"number": 1, "version": 1})
        assert reply["ops"] == [{"op": "replace", "path": "", "value": revision}]
    assert await document_of(session_id) == revision


async def test_join_since_before_a_restore_catches_up_to_the_restored_document(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    first = await edited_after_a_revision(alice, session_id)
    async with connected(bob) as other:
        copy = await other.ok("join", {"session": session_id})
    async with connected(alice) as owner:
        await owner.ok("join", {"session": session_id})
        await owner.ok("restore", {"number": 1, "version": 5})
        await owner.ok("patch", {"version": 6, "ops": add("/after", True)})
    async with connected(bob) as other:
        replay = await other.ok("join", {"session": session_id, "since": copy["version"]})
    data = copy["data"]
    for change in replay["changes"]:
        data = jsonpatch.apply_patch(data, change["ops"])
    assert [c["version"] for c in replay["changes"]] == [6, 7]
    assert data == {**first, "after": True}
