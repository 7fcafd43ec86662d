"""The session states of protocol section 4, one connection at a time, on the in-memory layer."""

import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async

from sessions_app.models import Change, Revision, Session
from tests.utils import connected, make_user

pytestmark = pytest.mark.django_db(transaction=True)

SNAPSHOT_KEYS = {"id", "title", "version", "data", "role", "members", "present"}


async def error(client: Any, state: str, data: Any = None) -> dict[str, Any]:
    """Send a request that must fail; returns the error frame."""
    reply = await client.request(state, data)
    assert reply["state"] == "error", reply
    assert reply["request_state"] == state, reply
    assert isinstance(reply["error"], str) and reply["error"], reply
    return reply


def who(user: Any) -> dict[str, Any]:
    return {"id": user.pk, "username": user.username}


async def shared_session(owner: Any, **roles: str) -> str:
    """A session owned by ``owner`` with the given members (``username=role``); returns its id."""
    async with connected(owner) as client:
        session = await client.ok("create", {"title": "Shared", "data": {"items": []}})
        for username, role in roles.items():
            await make_user(username)
            await client.ok("invite", {"username": username, "role": role})
    return session["id"]


async def snapshot_of(client: Any, session_id: str) -> dict[str, Any]:
    """The session as the database holds it now (re-joining the joined session is a read)."""
    return await client.ok("join", {"session": session_id})


# --- create --------------------------------------------------------------------------------------


async def test_create_returns_a_snapshot_with_the_caller_as_owner_and_present(alice: Any) -> None:
    data = {"zero": 0, "empty": "", "no": False, "list": [], "none": None, "nested": {"a": [1, {"b": 0}]}}
    async with connected(alice) as client:
        session = await client.ok("create", {"title": "Plan", "data": data})

    assert set(session) == SNAPSHOT_KEYS
    assert uuid.UUID(session["id"])
    assert session["title"] == "Plan"
    assert session["version"] == 0
    assert session["data"] == data
    assert session["role"] == "owner"
    assert session["members"] == [{**who(alice), "role": "owner"}]
    assert session["present"] == [who(alice)]


async def test_create_without_data_starts_from_an_empty_document(alice: Any) -> None:
    async with connected(alice) as client:
        session = await client.ok("create", {"title": "x" * 200})
    assert session["data"] == {}
    assert session["title"] == "x" * 200


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"title": ""},
        {"title": "x" * 201},
        {"title": 5},
        {"title": None},
        {"title": ["a"]},
        {"title": "nul \u0000 inside"},
        {"title": "ok", "data": []},
        {"title": "ok", "data": "text"},
        {"title": "ok", "data": 1},
        {"title": "ok", "data": None},
    ],
    ids=[
        "no title",
        "empty title",
        "title too long",
        "number title",
        "null title",
        "list title",
        "title with U+0000",
        "list data",
        "string data",
        "number data",
        "null data",
    ],
)
async def test_create_refuses_invalid_titles_and_data(alice: Any, payload: dict[str, Any]) -> None:
    async with connected(alice) as client:
        reply = await error(client, "create", payload)
        assert reply["code"] == "invalid_data"
        assert set(reply["errors"]) <= {"title", "data"}
        assert await client.ok("list") == {"sessions": []}


@pytest.mark.parametrize(
    "data",
    [{"text": "a\u0000b"}, {"a\u0000": 1}, {"deep": [{"x": ["\u0000"]}]}],
    ids=["in a value", "in a key", "nested"],
)
async def test_create_refuses_a_document_holding_U0000(alice: Any, data: dict[str, Any]) -> None:
    async with connected(alice) as client:
        reply = await error(client, "create", {"title": "nul", "data": data})
        assert reply["code"] == "invalid_data"
        assert await client.ok("list") == {"sessions": []}


async def test_U0000_in_a_title_message_username_token_or_operation_is_invalid_data(alice: Any, bob: Any) -> None:
    # One rule for every stored value (docs/protocol.md section 7, "Strings"): jsonb and
    # PostgreSQL text columns cannot hold U+0000. None of these may reach the database.
    async with connected(alice) as client:
        assert (await error(client, "create", {"title": "a\u0000"}))["code"] == "invalid_data"
        await client.ok("create", {"title": "ok", "data": {"a": 1}})
        for state, data in [
            ("patch", {"version": 0, "ops": [{"op": "add", "path": "/b", "value": 1, "x": "\u0000"}]}),
            ("patch", {"version": 0, "ops": [{"op": "test", "path": "/a", "value": "\u0000"}]}),
            ("invite", {"username": "bob\u0000", "role": "editor"}),
            ("authenticate", {"token": "x\u0000"}),
            ("save", {"message": "m\u0000"}),
        ]:
            reply = await error(client, state, data)
            assert reply["code"] == "invalid_data", reply
        assert (await client.ok("save", {"message": "done"}))["version"] == 0


async def test_create_keeps_a_backslash_u0000_text_which_is_not_U0000(alice: Any) -> None:
    # Six characters: a backslash, "u", four zeros. Storable everywhere, jsonb included.
    data = {"escape": "\\u0000"}
    async with connected(alice) as client:
        session = await client.ok("create", {"title": "escapes", "data": data})
    assert session["data"] == data


async def test_create_refuses_a_document_over_the_size_limit(alice: Any, settings: Any) -> None:
    settings.SESSIONS_MAX_DOCUMENT_BYTES = 100
    async with connected(alice) as client:
        # {"t":"..."} is 8 bytes plus the text.
        fits = await client.ok("create", {"title": "fits", "data": {"t": "x" * 92}})
        assert fits["data"] == {"t": "x" * 92}
        too_big = await error(client, "create", {"title": "big", "data": {"t": "x" * 93}})
        assert too_big["code"] == "invalid_data"
        assert too_big["data"] == {"limit": 100}
        # Bytes, not characters: 50 two-byte characters are 108 bytes.
        multibyte = await error(client, "create", {"title": "big", "data": {"t": "é" * 50}})
        assert multibyte["code"] == "invalid_data"
        assert [s["title"] for s in (await client.ok("list"))["sessions"]] == ["fits"]


async def test_create_past_the_per_user_limit_is_permission_denied(alice: Any, settings: Any) -> None:
    settings.SESSIONS_MAX_SESSIONS_PER_USER = 2
    async with connected(alice) as client:
        await client.ok("create", {"title": "one"})
        second = await client.ok("create", {"title": "two"})
        reply = await error(client, "create", {"title": "three"})
        assert reply["code"] == "permission_denied"
        assert reply["data"] == {"limit": 2}
        assert len((await client.ok("list"))["sessions"]) == 2
        # The refused create did not move the connection: it is still in "two".
        assert (await client.ok("presence"))["present"] == [who(alice)]
        assert (await snapshot_of(client, second["id"]))["title"] == "two"


# --- list ----------------------------------------------------------------------------------------


async def test_list_shows_own_and_shared_sessions_with_roles(alice: Any, bob: Any, carol: Any) -> None:
    async with connected(alice) as client:
        first = await client.ok("create", {"title": "First"})
        await client.ok("invite", {"username": "bob", "role": "editor"})
        second = await client.ok("create", {"title": "Second"})
        await client.ok("invite", {"username": "bob", "role": "viewer"})
        await client.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/a", "value": 1}]})
        mine = (await client.ok("list"))["sessions"]

    assert [(s["id"], s["title"], s["role"], s["version"]) for s in mine] == [
        (second["id"], "Second", "owner", 1),
        (first["id"], "First", "owner", 0),
    ]
    for entry in mine:
        assert set(entry) == {"id", "title", "role", "version", "updated_at"}
        assert entry["updated_at"].endswith("Z")

    async with connected(bob) as client:
        shared = (await client.ok("list"))["sessions"]
    assert [(s["title"], s["role"]) for s in shared] == [("Second", "viewer"), ("First", "editor")]

    async with connected(carol) as client:
        assert await client.ok("list") == {"sessions": []}


# --- join ----------------------------------------------------------------------------------------


async def test_join_returns_the_snapshot_with_role_members_and_present(alice: Any, bob: Any, carol: Any) -> None:
    async with connected(alice) as owner:
        created = await owner.ok("create", {"title": "Doc", "data": {"n": 0}})
        await owner.ok("invite", {"username": "bob", "role": "editor"})
        await owner.ok("invite", {"username": "carol", "role": "viewer"})
        await owner.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/n", "value": 1}]})
        async with connected(bob) as client:
            session = await client.ok("join", {"session": created["id"]})

    assert set(session) == SNAPSHOT_KEYS
    assert session["id"] == created["id"]
    assert session["version"] == 1
    assert session["data"] == {"n": 1}
    assert session["role"] == "editor"
    assert session["members"] == [
        {**who(alice), "role": "owner"},
        {**who(bob), "role": "editor"},
        {**who(carol), "role": "viewer"},
    ]
    assert session["present"] == [who(alice), who(bob)]


async def test_join_answers_not_found_for_strangers_and_unknown_ids_alike(alice: Any, carol: Any) -> None:
    session_id = await shared_session(alice)
    async with connected(carol) as client:
        stranger = await error(client, "join", {"session": session_id})
        unknown = await error(client, "join", {"session": str(uuid.uuid4())})
    assert stranger["code"] == unknown["code"] == "not_found"
    assert stranger["error"] == unknown["error"]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"session": "not-a-uuid"},
        {"session": None},
        {"session": 0},
        {"session": str(uuid.uuid4()), "since": -1},
        {"session": str(uuid.uuid4()), "since": "x"},
        {"session": str(uuid.uuid4()), "since": "1"},
    ],
    ids=["no session", "not a uuid", "null", "number", "negative since", "text since", "numeric text since"],
)
async def test_join_refuses_invalid_data(alice: Any, payload: dict[str, Any]) -> None:
    async with connected(alice) as client:
        reply = await error(client, "join", payload)
    assert reply["code"] == "invalid_data"
    assert set(reply["errors"]) <= {"session", "since"}


async def test_join_with_since_returns_the_changes_after_it(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    async with connected(alice) as owner:
        await owner.ok("join", {"session": session_id})
        for version in range(3):
            await owner.ok("patch", {"version": version, "ops": [{"op": "add", "path": "/items/-", "value": version}]})
        async with connected(bob) as client:
            replay = await client.ok("join", {"session": session_id, "since": 1})
            assert set(replay) == {"id", "version", "changes"}
            assert (replay["id"], replay["version"]) == (session_id, 3)
            assert [c["version"] for c in replay["changes"]] == [2, 3]
            assert replay["changes"][0]["ops"] == [{"op": "add", "path": "/items/-", "value": 1}]
            for change in replay["changes"]:
                assert set(change) == {"version", "ops", "by", "at"}
                assert change["by"] == who(alice)
                assert change["at"].endswith("Z")

            up_to_date = await client.ok("join", {"session": session_id, "since": 3})
            assert up_to_date == {"id": session_id, "version": 3, "changes": []}
            ahead = await client.ok("join", {"session": session_id, "since": 10})
            assert set(ahead) == SNAPSHOT_KEYS
            assert ahead["data"] == {"items": [0, 1, 2]}


async def test_join_with_since_older_than_the_kept_log_returns_the_snapshot(
    alice: Any, bob: Any, settings: Any
) -> None:
    settings.SESSIONS_CHANGE_LOG_KEEP = 2
    session_id = await shared_session(alice, bob="viewer")
    async with connected(alice) as owner:
        await owner.ok("join", {"session": session_id})
        for version in range(4):
            await owner.ok("patch", {"version": version, "ops": [{"op": "add", "path": "/items/-", "value": version}]})
    async with connected(bob) as client:
        too_old = await client.ok("join", {"session": session_id, "since": 1})
        assert set(too_old) == SNAPSHOT_KEYS
        assert (too_old["version"], too_old["data"]) == (4, {"items": [0, 1, 2, 3]})
        kept = await client.ok("join", {"session": session_id, "since": 2})
        assert [c["version"] for c in kept["changes"]] == [3, 4]


async def test_join_with_since_before_the_bytes_the_log_keeps_returns_the_snapshot(
    alice: Any, bob: Any, settings: Any
) -> None:
    # Issue 11, item 7: the log is bounded in bytes as well; a since it no longer covers gets
    # the full snapshot, as for a since older than SESSIONS_CHANGE_LOG_KEEP changes.
    settings.SESSIONS_CHANGE_LOG_BYTES = 2_500
    session_id = await shared_session(alice, bob="viewer")
    async with connected(alice) as owner:
        await owner.ok("join", {"session": session_id})
        for version in range(4):
            ops = [{"op": "add", "path": "/items/-", "value": f"{version}" * 1000}]
            await owner.ok("patch", {"version": version, "ops": ops})
    async with connected(bob) as client:
        too_old = await client.ok("join", {"session": session_id, "since": 1})
        assert set(too_old) == SNAPSHOT_KEYS and too_old["version"] == 4
        assert too_old["data"] == {"items": [f"{version}" * 1000 for version in range(4)]}
        kept = await client.ok("join", {"session": session_id, "since": 2})
        assert [change["version"] for change in kept["changes"]] == [3, 4]


async def test_joining_another_session_leaves_the_first(alice: Any, bob: Any) -> None:
    first = await shared_session(alice, bob="editor")
    second = await shared_session(alice, bob="editor")
    async with connected(alice) as in_first, connected(bob) as client:
        await in_first.ok("join", {"session": first})
        await client.ok("join", {"session": first})
        await in_first.push("presence")
        await client.ok("join", {"session": second})

        left = await in_first.push("presence")
        assert left["data"] == {"session": first, "present": [who(alice)], "left": who(bob)}
        await in_first.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/a", "value": 1}]})
        assert await client.nothing()
        assert (await in_first.ok("presence"))["present"] == [who(alice)]


async def test_a_failed_join_keeps_the_joined_session(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="viewer")
    async with connected(alice) as owner, connected(bob) as client:
        await owner.ok("join", {"session": session_id})
        await client.ok("join", {"session": session_id})
        await owner.push("presence")
        assert (await error(client, "join", {"session": str(uuid.uuid4())}))["code"] == "not_found"

        await owner.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/a", "value": 1}]})
        assert (await client.push("patched"))["data"]["version"] == 1
        assert (await client.ok("presence"))["present"] == [who(alice), who(bob)]


# --- patch ---------------------------------------------------------------------------------------


async def test_patch_is_acknowledged_with_the_new_version_and_stored(alice: Any) -> None:
    falsy = [
        {"op": "add", "path": "/zero", "value": 0},
        {"op": "add", "path": "/empty", "value": ""},
        {"op": "add", "path": "/no", "value": False},
        {"op": "add", "path": "/list", "value": []},
        {"op": "add", "path": "/none", "value": None},
    ]
    async with connected(alice) as client:
        session = await client.ok("create", {"title": "Doc"})
        assert await client.ok("patch", {"version": 0, "ops": falsy}) == {"version": 1}
        move = [{"op": "move", "from": "/zero", "path": "/list/0"}, {"op": "test", "path": "/no", "value": False}]
        assert await client.ok("patch", {"version": 1, "ops": move}) == {"version": 2}
        stored = await snapshot_of(client, session["id"])
    assert stored["version"] == 2
    assert stored["data"] == {"empty": "", "no": False, "list": [0], "none": None}
    log = await database_sync_to_async(lambda: list(Change.objects.values_list("version", "ops")))()
    assert log == [(1, falsy), (2, move)]


async def test_patch_on_an_old_or_future_version_is_a_conflict_carrying_the_current_version(alice: Any) -> None:
    async with connected(alice) as client:
        session = await client.ok("create", {"title": "Doc", "data": {"n": 0}})
        await client.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/n", "value": 1}]})
        for stale in (0, 5):
            reply = await error(
                client, "patch", {"version": stale, "ops": [{"op": "replace", "path": "/n", "value": 9}]}
            )
            assert reply["code"] == "conflict"
            assert reply["data"] == {"version": 1}
        stored = await snapshot_of(client, session["id"])
    assert (stored["version"], stored["data"]) == (1, {"n": 1})


INVALID_OPS = {
    "unknown op": [{"op": "bogus", "path": "/n"}],
    "op not a string": [{"op": 5, "path": "/n"}],
    "no op": [{"path": "/n", "value": 1}],
    "no path": [{"op": "add", "value": 1}],
    "path not a string": [{"op": "add", "path": 5, "value": 1}],
    "path without slash": [{"op": "add", "path": "n", "value": 1}],
    "bad escape": [{"op": "add", "path": "/~2", "value": 1}],
    "no value": [{"op": "add", "path": "/x"}],
    "remove missing": [{"op": "remove", "path": "/missing"}],
    "replace missing": [{"op": "replace", "path": "/missing", "value": 1}],
    "add under missing": [{"op": "add", "path": "/missing/x", "value": 1}],
    "add into a number": [{"op": "add", "path": "/n/x", "value": 1}],
    "index out of range": [{"op": "add", "path": "/list/9", "value": 1}],
    "index not a number": [{"op": "add", "path": "/list/x", "value": 1}],
    "move from missing": [{"op": "move", "from": "/missing", "path": "/x"}],
    "move without from": [{"op": "move", "path": "/x"}],
    "move into itself": [{"op": "move", "from": "/obj", "path": "/obj/inner"}],
    "copy from missing": [{"op": "copy", "from": "/missing", "path": "/x"}],
    "failed test": [{"op": "test", "path": "/n", "value": 2}],
    "test of a missing path": [{"op": "test", "path": "/missing", "value": None}],
    "U+0000 value": [{"op": "add", "path": "/x", "value": "a\u0000"}],
    "valid then invalid": [{"op": "add", "path": "/x", "value": 1}, {"op": "remove", "path": "/missing"}],
    "root replaced by a list": [{"op": "replace", "path": "", "value": [1]}],
    "root replaced by a string": [{"op": "replace", "path": "", "value": "text"}],
    "root replaced by null": [{"op": "replace", "path": "", "value": None}],
    "root removed": [{"op": "remove", "path": ""}],
}


@pytest.mark.parametrize("ops", list(INVALID_OPS.values()), ids=list(INVALID_OPS))
async def test_patch_that_cannot_be_applied_is_invalid_data_and_changes_nothing(alice: Any, ops: list[Any]) -> None:
    document = {"n": 1, "list": [1], "obj": {"inner": {}}}
    async with connected(alice) as client:
        session = await client.ok("create", {"title": "Doc", "data": document})
        reply = await error(client, "patch", {"version": 0, "ops": ops})
        assert reply["code"] == "invalid_data"
        stored = await snapshot_of(client, session["id"])
    assert (stored["version"], stored["data"]) == (0, document)
    assert await database_sync_to_async(Change.objects.count)() == 0


async def test_a_move_into_its_own_child_says_so_not_that_a_path_is_missing(alice: Any) -> None:
    """RFC 6902 section 4.4: "from" must not be a proper prefix of "path". The error names that
    rule (jsonpatch's own refusal used to read "its path does not exist or does not fit")."""
    document = {"obj": {"inner": {}}, "objective": 1}
    async with connected(alice) as client:
        await client.ok("create", {"title": "Doc", "data": document})
        for source, path, what in (("/obj", "/obj/inner/x", "'/obj'"), ("", "/copy", "the whole document")):
            reply = await error(client, "patch", {"version": 0, "ops": [{"op": "move", "from": source, "path": path}]})
            assert reply["code"] == "invalid_data"
            assert reply["error"] == (
                f"Operation 0 (move {path}) cannot be applied: it moves {what} into one of its own children "
                "(RFC 6902, section 4.4)."
            )
        # A sibling whose name starts with the same letters is no child; a move onto itself is allowed.
        ops = [
            {"op": "move", "from": "/obj", "path": "/objective"},
            {"op": "move", "from": "/objective", "path": "/objective"},
        ]
        assert await client.ok("patch", {"version": 0, "ops": ops}) == {"version": 1}


async def test_a_test_operation_tells_true_from_1_and_false_from_0(alice: Any) -> None:
    # RFC 6902 section 4.6: literals are equal only to the same literal; numbers only to numbers.
    async with connected(alice) as client:
        await client.ok("create", {"title": "Doc", "data": {"flag": True, "off": False}})
        for path, value in (("/flag", 1), ("/off", 0)):
            reply = await client.request("patch", {"version": 0, "ops": [{"op": "test", "path": path, "value": value}]})
            assert reply.get("code") == "invalid_data", (path, value, reply)


@pytest.mark.parametrize(
    "payload",
    [
        {"version": 0},
        {"version": 0, "ops": []},
        {"version": 0, "ops": "add"},
        {"version": 0, "ops": [1]},
        {"version": 0, "ops": None},
        {"ops": [{"op": "add", "path": "/a", "value": 1}]},
        {"version": -1, "ops": [{"op": "add", "path": "/a", "value": 1}]},
        {"version": None, "ops": [{"op": "add", "path": "/a", "value": 1}]},
        {"version": "zero", "ops": [{"op": "add", "path": "/a", "value": 1}]},
        {"version": "0", "ops": [{"op": "add", "path": "/a", "value": 1}]},
        {"version": True, "ops": [{"op": "add", "path": "/a", "value": 1}]},
    ],
    ids=[
        "no ops",
        "empty ops",
        "ops a string",
        "op not an object",
        "null ops",
        "no version",
        "negative version",
        "null version",
        "text version",
        "numeric text version",
        "boolean version",
    ],
)
async def test_patch_refuses_data_outside_its_schema(alice: Any, payload: dict[str, Any]) -> None:
    async with connected(alice) as client:
        await client.ok("create", {"title": "Doc"})
        reply = await client.request("patch", payload)
        assert reply.get("code") == "invalid_data", reply
        assert set(reply["errors"]) <= {"version", "ops", "ops.0"}
    assert await database_sync_to_async(Change.objects.count)() == 0


async def test_patch_that_would_exceed_the_document_limit_is_invalid_data(alice: Any, settings: Any) -> None:
    settings.SESSIONS_MAX_DOCUMENT_BYTES = 100
    async with connected(alice) as client:
        session = await client.ok("create", {"title": "Doc", "data": {"t": ""}})
        reply = await error(
            client, "patch", {"version": 0, "ops": [{"op": "replace", "path": "/t", "value": "x" * 93}]}
        )
        assert reply["code"] == "invalid_data"
        assert await client.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/t", "value": "x" * 92}]})
        assert (await snapshot_of(client, session["id"]))["data"] == {"t": "x" * 92}


async def test_patch_by_a_viewer_is_permission_denied(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="viewer")
    async with connected(bob) as client:
        await client.ok("join", {"session": session_id})
        reply = await error(client, "patch", {"version": 0, "ops": [{"op": "add", "path": "/a", "value": 1}]})
        assert reply["code"] == "permission_denied"
        assert (await snapshot_of(client, session_id))["version"] == 0


async def test_patch_by_an_editor_is_accepted(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    async with connected(bob) as client:
        await client.ok("join", {"session": session_id})
        ops = [{"op": "add", "path": "/items/-", "value": "bob"}]
        assert await client.ok("patch", {"version": 0, "ops": ops}) == {"version": 1}
        assert (await snapshot_of(client, session_id))["data"] == {"items": ["bob"]}


async def test_patch_without_a_joined_session_is_not_joined(alice: Any) -> None:
    async with connected(alice) as client:
        reply = await error(client, "patch", {"version": 0, "ops": [{"op": "add", "path": "/a", "value": 1}]})
        assert reply["code"] == "not_joined"
        # not_joined is checked before the data.
        assert (await error(client, "patch", {"nonsense": True}))["code"] == "not_joined"


# --- presence ------------------------------------------------------------------------------------


async def test_presence_lists_the_users_joined_to_the_session(alice: Any, bob: Any, carol: Any) -> None:
    session_id = await shared_session(alice, bob="viewer", carol="editor")
    async with connected(carol) as c1, connected(alice) as a1, connected(alice) as a2, connected(bob) as idle:
        assert (await error(a1, "presence"))["code"] == "not_joined"
        await c1.ok("join", {"session": session_id})
        await a1.ok("join", {"session": session_id})
        await a2.ok("join", {"session": session_id})
        assert await idle.ok("list")  # connected, not joined: not present
        assert await a1.ok("presence") == {"present": [who(alice), who(carol)]}


# --- invite --------------------------------------------------------------------------------------


async def test_invite_adds_a_member_and_returns_the_members(alice: Any, bob: Any) -> None:
    async with connected(alice) as client:
        await client.ok("create", {"title": "Doc"})
        reply = await client.ok("invite", {"username": "bob", "role": "viewer"})
    assert reply == {"members": [{**who(alice), "role": "owner"}, {**who(bob), "role": "viewer"}]}


@pytest.mark.parametrize("role", ["editor", "viewer"])
async def test_invite_by_a_non_owner_is_permission_denied(alice: Any, carol: Any, role: str) -> None:
    session_id = await shared_session(alice, bob=role)
    bob = await make_user("bob")
    async with connected(bob) as client:
        await client.ok("join", {"session": session_id})
        assert (await error(client, "invite", {"username": "carol", "role": "viewer"}))["code"] == "permission_denied"
        assert [m["username"] for m in (await snapshot_of(client, session_id))["members"]] == ["alice", "bob"]


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "bob", "role": "owner"},
        {"username": "bob", "role": "admin"},
        {"username": "bob"},
        {"role": "editor"},
        {"username": 7, "role": "editor"},
    ],
    ids=["owner role", "unknown role", "no role", "no username", "number username"],
)
async def test_invite_refuses_invalid_data(alice: Any, bob: Any, payload: dict[str, Any]) -> None:
    async with connected(alice) as client:
        session = await client.ok("create", {"title": "Doc"})
        assert (await error(client, "invite", payload))["code"] == "invalid_data"
        assert (await snapshot_of(client, session["id"]))["members"] == [{**who(alice), "role": "owner"}]


async def test_invite_of_an_unknown_or_inactive_user_is_not_found(alice: Any) -> None:
    await make_user("sleeper", active=False)
    async with connected(alice) as client:
        await client.ok("create", {"title": "Doc"})
        assert (await error(client, "invite", {"username": "nobody", "role": "editor"}))["code"] == "not_found"
        assert (await error(client, "invite", {"username": "sleeper", "role": "editor"}))["code"] == "not_found"


async def test_invite_cannot_change_the_owners_role(alice: Any) -> None:
    async with connected(alice) as client:
        await client.ok("create", {"title": "Doc"})
        assert (await error(client, "invite", {"username": "alice", "role": "viewer"}))["code"] == "invalid_data"


async def test_invite_past_the_member_limit_is_permission_denied_but_roles_still_change(
    alice: Any, bob: Any, carol: Any, settings: Any
) -> None:
    settings.SESSIONS_MAX_MEMBERS_PER_SESSION = 2  # the owner and one more
    async with connected(alice) as client:
        await client.ok("create", {"title": "Doc"})
        await client.ok("invite", {"username": "bob", "role": "editor"})
        reply = await error(client, "invite", {"username": "carol", "role": "editor"})
        assert reply["code"] == "permission_denied"
        assert reply["data"] == {"limit": 2}
        # An existing member's role may still change at the limit.
        members = await client.ok("invite", {"username": "bob", "role": "viewer"})
        assert [m["role"] for m in members["members"]] == ["owner", "viewer"]
        assert await client.ok("remove", {"username": "bob"})
        await client.ok("invite", {"username": "carol", "role": "viewer"})


async def test_invite_again_changes_the_role_and_it_applies_at_once(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    async with connected(alice) as owner, connected(bob) as client:
        await owner.ok("join", {"session": session_id})
        await client.ok("join", {"session": session_id})
        assert await client.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/a", "value": 1}]})
        members = await owner.ok("invite", {"username": "bob", "role": "viewer"})
        assert members["members"][1] == {**who(bob), "role": "viewer"}
        reply = await error(client, "patch", {"version": 1, "ops": [{"op": "add", "path": "/b", "value": 1}]})
        assert reply["code"] == "permission_denied"


# --- leave ---------------------------------------------------------------------------------------


async def test_leave_stops_the_pushes_and_tells_the_others(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    async with connected(alice) as owner, connected(bob) as client:
        await owner.ok("join", {"session": session_id})
        await client.ok("join", {"session": session_id})
        await owner.push("presence")
        assert await client.ok("leave") == {}

        left = await owner.push("presence")
        assert left["data"] == {"session": session_id, "present": [who(alice)], "left": who(bob)}
        await owner.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/a", "value": 1}]})
        assert await client.nothing()
        assert (await error(client, "presence"))["code"] == "not_joined"
        assert await client.ok("leave") == {}  # no session: still {}


# --- save ----------------------------------------------------------------------------------------


async def test_save_numbers_revisions_from_1_and_closes_with_1000(alice: Any) -> None:
    async with connected(alice) as client:
        session = await client.ok("create", {"title": "Doc", "data": {"n": 0}})
        await client.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/n", "value": 1}]})
        assert await client.ok("save", {"message": "first"}) == {"revision": 1, "version": 1}
        assert await client.closed() == 1000
    async with connected(alice) as client:
        await client.ok("join", {"session": session["id"]})
        assert await client.ok("save") == {"revision": 2, "version": 1}
        assert await client.closed() == 1000

    revisions = await database_sync_to_async(
        lambda: list(Revision.objects.order_by("number").values_list("number", "version", "data", "message"))
    )()
    assert revisions == [(1, 1, {"n": 1}, "first"), (2, 1, {"n": 1}, "")]


async def test_save_pushes_saved_to_the_others(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="editor")
    async with connected(alice) as owner, connected(bob) as client:
        await owner.ok("join", {"session": session_id})
        await client.ok("join", {"session": session_id})
        assert await client.ok("save", {"message": "by bob"}) == {"revision": 1, "version": 0}
        saved = await owner.push("saved")
        assert saved["data"] == {"session": session_id, "revision": 1, "version": 0, "by": who(bob)}
        assert await client.closed() == 1000


async def test_saves_keep_the_last_revisions_and_a_save_past_the_quota_is_refused(alice: Any, settings: Any) -> None:
    # Issue 11, item 7: saves of a large document no longer grow the revisions without bound.
    settings.SESSIONS_REVISIONS_KEEP = 3
    document = {"text": "x" * 60_000}
    async with connected(alice) as client:
        session = (await client.ok("create", {"title": "Big", "data": document}))["id"]
        assert await client.ok("save") == {"revision": 1, "version": 0}
    for number in range(2, 7):
        async with connected(alice) as client:
            await client.ok("join", {"session": session})
            assert await client.ok("save") == {"revision": number, "version": 0}
            assert await client.closed() == 1000
    kept = await database_sync_to_async(lambda: list(Revision.objects.values_list("number", "size")))()
    assert [number for number, _ in kept] == [6, 5, 4]
    size = kept[0][1]
    assert size > 60_000

    settings.SESSIONS_REVISION_BYTES_PER_USER = 3 * size + 10
    async with connected(alice) as client:
        other = (await client.ok("create", {"title": "Another", "data": document}))["id"]
        refused = await error(client, "save", {"message": "one too many"})
        assert refused["code"] == "quota_exceeded"
        assert refused["data"] == {"limit": 3 * size + 10, "used": 3 * size}
        assert await client.nothing()  # the socket stays open
        assert "server_time" in await client.ok("ping")
    assert await database_sync_to_async(Revision.objects.filter(session_id=other).count)() == 0


async def test_save_by_a_viewer_is_permission_denied_and_keeps_the_socket_open(alice: Any, bob: Any) -> None:
    session_id = await shared_session(alice, bob="viewer")
    async with connected(bob) as client:
        await client.ok("join", {"session": session_id})
        assert (await error(client, "save", {"message": "no"}))["code"] == "permission_denied"
        assert await client.nothing()
        assert "server_time" in await client.ok("ping")
    assert await database_sync_to_async(Revision.objects.count)() == 0


async def test_save_with_an_invalid_message_is_invalid_data_and_keeps_the_socket_open(alice: Any) -> None:
    async with connected(alice) as client:
        await client.ok("create", {"title": "Doc"})
        assert (await error(client, "save", {"message": "x" * 501}))["code"] == "invalid_data"
        assert (await error(client, "save", {"message": 5}))["code"] == "invalid_data"
        assert "server_time" in await client.ok("ping")


async def test_save_without_a_session_replies_empty_and_closes_with_1000(alice: Any) -> None:
    async with connected(alice) as client:
        assert await client.ok("save") == {}
        assert await client.closed() == 1000
    assert await database_sync_to_async(Session.objects.count)() == 0
