"""Services and selectors, called directly: plain synchronous tests named as sentences."""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from sessions_app import documents, presence, protocol, selectors, services
from sessions_app.conf import app_settings
from sessions_app.models import Change, Connection, Membership, Revision, ServerProcess, Session
from sessions_app.protocol import ProtocolError

pytestmark = pytest.mark.django_db


@pytest.fixture
def users(django_user_model: Any) -> dict[str, dict[str, Any]]:
    made = {name: django_user_model.objects.create(username=name) for name in ("alice", "bob", "carol")}
    return {name: selectors.user_summary(user) for name, user in made.items()}


def create(user: dict[str, Any], data: dict[str, Any] | None = None, channel: str = "") -> Any:
    return services.session_create(user=user, channel_name=channel, title="Doc", data=data or {})


def patch(user: dict[str, Any], session_id: Any, version: int, ops: list[Any]) -> services.Outcome:
    return services.session_patch(user=user, channel_name="", session_id=session_id, version=version, ops=ops)


def add(key: str, value: Any = 1) -> list[dict[str, Any]]:
    return [{"op": "add", "path": f"/{key}", "value": value}]


def open_connection(user: dict[str, Any], channel: str, server: str | None = None) -> None:
    Connection.objects.create(channel_name=channel, server_id=server or presence.SERVER_ID, user_id=user["id"])


def raised(code: str, call: Any, *args: Any, **kwargs: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        call(*args, **kwargs)
    assert info.value.code == code, info.value.message
    return info.value


# --- create, patch, change log -------------------------------------------------------------------


def test_session_create_makes_the_user_owner_member(users: Any) -> None:
    outcome = create(users["alice"], {"a": 0})
    session = Session.objects.get()
    assert (session.title, session.owner_id, session.data, session.version) == (
        "Doc",
        users["alice"]["id"],
        {"a": 0},
        0,
    )
    assert list(Membership.objects.values_list("user_id", "role")) == [(users["alice"]["id"], "owner")]
    assert (outcome.session_id, outcome.role, outcome.version) == (session.pk, "owner", 0)


def test_a_patch_bumps_the_version_stores_the_document_and_logs_the_change(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    outcome = patch(users["alice"], session_id, 0, add("a", [0, ""]))
    assert outcome.data == {"version": 1}
    session = Session.objects.get()
    assert (session.version, session.data) == (1, {"a": [0, ""]})
    change = Change.objects.get()
    assert (change.version, change.ops, change.author_id) == (1, add("a", [0, ""]), users["alice"]["id"])


def test_a_patch_returns_one_patched_push_excluding_the_sender(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    outcome = services.session_patch(
        user=users["alice"], channel_name="chan!1", session_id=session_id, version=0, ops=add("a")
    )
    [event] = outcome.pushes
    assert event.message["exclude"] == "chan!1"
    assert event.message["version"] == 1
    assert json.loads(event.message["text"])["state"] == "patched"


# Each operation's value is placed in the document; a later operation of the same patch then
# changes it there. If the library placed the operation's own object (jsonpatch before 1.34 did,
# for add and replace), that change would show in the operation too: the change log and the push
# would carry ops that no longer produce the stored document.
ALIASING_OPS = [
    {"op": "add", "path": "/items", "value": []},
    {"op": "add", "path": "/items/-", "value": "milk"},
    {"op": "add", "path": "/box", "value": 0},
    {"op": "replace", "path": "/box", "value": {"k": []}},
    {"op": "add", "path": "/box/k/-", "value": 1},
    {"op": "add", "path": "", "value": {"root": [], "items": ["milk"], "box": {"k": [1]}}},
    {"op": "add", "path": "/root/-", "value": 2},
]


def test_a_patch_is_logged_and_pushed_exactly_as_sent_and_replays_to_the_stored_document(users: Any) -> None:
    session_id = create(users["alice"], {"start": True}).session_id
    ops = json.loads(json.dumps(ALIASING_OPS))  # the handler's own objects, as decoded from a frame
    outcome = patch(users["alice"], session_id, 0, ops)
    stored = Session.objects.get().data
    assert stored == {"root": [2], "items": ["milk"], "box": {"k": [1]}}
    change = Change.objects.get()
    assert change.ops == ALIASING_OPS
    [push] = outcome.pushes
    assert json.loads(push.message["text"])["data"]["ops"] == ALIASING_OPS
    # Replaying the change log on the document it started from (join with since) gives the stored one.
    assert documents.apply_patch({"start": True}, change.ops) == stored


def test_applying_the_same_operations_twice_gives_the_same_document_both_times() -> None:
    ops = json.loads(json.dumps(ALIASING_OPS))
    first = documents.apply_patch({}, ops)
    assert ops == ALIASING_OPS
    assert documents.apply_patch({}, ops) == first


NUL_OPS = {
    "in an extra member": [{"op": "add", "path": "/a", "value": 1, "x": "\u0000"}],
    "in an extra member's name": [{"op": "add", "path": "/a", "value": 1, "x\u0000": 1}],
    "in a test value": [{"op": "test", "path": "/start", "value": "\u0000"}],
    "in a nested value": [{"op": "add", "path": "/a", "value": {"b": ["x\u0000y"]}}],
    "in a path": [{"op": "add", "path": "/a\u0000", "value": 1}],
    "in the second operation": [{"op": "add", "path": "/a", "value": 1}, {"op": "remove", "path": "/a", "n": "\u0000"}],
}


@pytest.mark.parametrize("ops", NUL_OPS.values(), ids=NUL_OPS.keys())
def test_a_patch_holding_U0000_anywhere_is_invalid_data_and_nothing_is_stored(users: Any, ops: Any) -> None:
    session_id = create(users["alice"], {"start": "\\u0000"}).session_id  # six characters, not U+0000
    error = raised(protocol.INVALID_DATA, patch, users["alice"], session_id, 0, ops)
    assert error.message.startswith(f"Operation {len(ops) - 1} (") and "U+0000" in error.message
    assert (Session.objects.get().version, Change.objects.count()) == (0, 0)


def test_an_operation_may_hold_the_text_backslash_u0000_which_is_not_U0000(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    ops = [{"op": "add", "path": "/a", "value": "\\u0000", "note": "C:\\u0000dir"}]
    patch(users["alice"], session_id, 0, ops)
    assert Change.objects.get().ops == ops


def test_the_change_log_is_trimmed_to_the_kept_number_of_changes(users: Any, settings: Any) -> None:
    settings.SESSIONS_CHANGE_LOG_KEEP = 3
    session_id = create(users["alice"]).session_id
    for version in range(5):
        patch(users["alice"], session_id, version, add(f"k{version}"))
    assert list(Change.objects.values_list("version", flat=True)) == [3, 4, 5]
    assert selectors.changes_since(session_id=session_id, since=2, version=5) is not None
    assert selectors.changes_since(session_id=session_id, since=1, version=5) is None


def test_the_change_log_is_trimmed_to_its_byte_bound(users: Any, settings: Any) -> None:
    # Issue 11, item 7: bounded in bytes too, not only in entries (1,000 changes of 64 KiB each
    # were 64 MB per session).
    session_id = create(users["alice"]).session_id
    ops = [[{"op": "add", "path": f"/k{version}", "value": "x" * 50}] for version in range(6)]
    size = len(json.dumps(ops[0], separators=(",", ":")))  # the same for each
    settings.SESSIONS_CHANGE_LOG_BYTES = 3 * size + size // 2
    for version in range(6):
        patch(users["alice"], session_id, version, ops[version])
    kept = list(Change.objects.values_list("version", "start"))
    assert kept == [(4, 3 * size), (5, 4 * size), (6, 5 * size)]  # 3 fit in the bound, 4 do not
    assert Session.objects.get().log_end == 6 * size
    assert selectors.changes_since(session_id=session_id, since=3, version=6) is not None
    assert selectors.changes_since(session_id=session_id, since=2, version=6) is None


def test_a_change_larger_than_the_byte_bound_is_not_kept(users: Any, settings: Any) -> None:
    settings.SESSIONS_CHANGE_LOG_BYTES = 40
    session_id = create(users["alice"]).session_id
    patch(users["alice"], session_id, 0, add("small"))  # 39 bytes
    assert list(Change.objects.values_list("version", flat=True)) == [1]
    patch(users["alice"], session_id, 1, add("large", "x" * 100))
    assert list(Change.objects.values_list("version", flat=True)) == []
    assert selectors.changes_since(session_id=session_id, since=1, version=2) is None
    assert selectors.changes_since(session_id=session_id, since=2, version=2) == []


def test_the_change_log_of_one_session_does_not_trim_another(users: Any, settings: Any) -> None:
    settings.SESSIONS_CHANGE_LOG_KEEP = 1
    first = create(users["alice"]).session_id
    second = create(users["alice"]).session_id
    patch(users["alice"], first, 0, add("a"))
    patch(users["alice"], second, 0, add("a"))
    patch(users["alice"], second, 1, add("b"))
    assert sorted(Change.objects.values_list("session_id", "version")) == sorted([(first, 1), (second, 2)])


def test_a_stale_patch_that_collides_is_a_conflict_carrying_the_current_version(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    patch(users["alice"], session_id, 0, add("a"))
    error = raised(protocol.CONFLICT, patch, users["alice"], session_id, 0, add("a", 2))
    assert error.data == {"version": 1}
    assert "/a" in error.message
    assert Session.objects.get().data == {"a": 1}


def test_a_stale_patch_that_does_not_collide_is_rebased_and_its_applied_operations_stored(users: Any) -> None:
    session_id = create(users["alice"], data={"items": ["x", "y"]}).session_id
    first = [{"op": "add", "path": "/items/0", "value": "w"}]
    assert patch(users["alice"], session_id, 0, first).data == {"version": 1}
    stale = [{"op": "replace", "path": "/items/1", "value": "Y"}]
    outcome = patch(users["alice"], session_id, 0, stale)
    applied = [{"op": "replace", "path": "/items/2", "value": "Y"}]
    assert outcome.data == {"version": 2, "rebased": True, "ops": applied}
    assert Session.objects.get().data == {"items": ["w", "x", "Y"]}
    log = list(Change.objects.filter(session_id=session_id).order_by("version").values_list("version", "ops"))
    assert log == [(1, first), (2, applied)]  # join with since replays what was applied
    assert json.loads(outcome.pushes[0].message["text"])["data"]["ops"] == applied  # patched carries them
    assert (
        services.session_join(user=users["alice"], channel_name="", session_id=session_id, since=0).data["changes"][1][
            "ops"
        ]
        == applied
    )


def test_a_patch_on_a_version_ahead_of_the_session_is_a_conflict(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    assert raised(protocol.CONFLICT, patch, users["alice"], session_id, 5, add("a")).data == {"version": 0}


def test_a_patch_further_behind_than_the_rebase_bound_or_the_kept_log_is_a_conflict(users: Any, settings: Any) -> None:
    session_id = create(users["alice"]).session_id
    for version, key in enumerate("abc"):
        patch(users["alice"], session_id, version, add(key))
    settings.SESSIONS_REBASE_MAX_CHANGES = 2
    assert raised(protocol.CONFLICT, patch, users["alice"], session_id, 0, add("d")).data == {"version": 3}
    assert patch(users["alice"], session_id, 1, add("d")).data["version"] == 4
    settings.SESSIONS_REBASE_MAX_CHANGES = 100
    Change.objects.filter(session_id=session_id, version=3).delete()  # trimmed from the log
    error = raised(protocol.CONFLICT, patch, users["alice"], session_id, 2, add("e"))
    assert error.data == {"version": 4} and "no longer kept" in error.message


@pytest.mark.parametrize("max_steps", [0, 1])
def test_a_rebase_past_its_step_budget_is_a_conflict(users: Any, settings: Any, max_steps: int) -> None:
    session_id = create(users["alice"]).session_id
    patch(users["alice"], session_id, 0, add("a"))
    settings.SESSIONS_REBASE_MAX_STEPS = max_steps
    raised(protocol.CONFLICT, patch, users["alice"], session_id, 0, add("b"))
    settings.SESSIONS_REBASE_MAX_STEPS = 100
    assert patch(users["alice"], session_id, 0, add("b")).data["rebased"] is True


def test_an_editors_patch_too_far_behind_a_version_this_process_saw_conflicts_without_a_query(
    users: Any, django_assert_num_queries: Any, settings: Any
) -> None:
    session_id = create(users["alice"]).session_id
    patch(users["alice"], session_id, 0, add("a"))
    settings.SESSIONS_REBASE_MAX_CHANGES = 0
    with django_assert_num_queries(0):
        error = raised(
            protocol.CONFLICT,
            services.session_patch,
            user=users["alice"],
            channel_name="",
            session_id=session_id,
            version=0,
            ops=add("b"),
            editor=True,
        )
    assert error.data == {"version": 1}


def test_a_stale_patch_not_known_to_come_from_an_editor_still_asks_the_database(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    services.member_invite(user=users["alice"], session_id=session_id, username="bob", role="viewer")
    patch(users["alice"], session_id, 0, add("a"))
    # A viewer gets permission_denied, whatever version it sent.
    raised(protocol.PERMISSION_DENIED, patch, users["bob"], session_id, 0, add("b"))


def test_the_conditional_update_refuses_a_version_bumped_after_it_was_read(users: Any) -> None:
    # Another writer commits between this patch's read and its UPDATE ... WHERE version = n:
    # run that writer's statement just before the conditional update reaches the database.
    session_id = create(users["alice"]).session_id

    bumped = []

    def concurrent_writer(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith('UPDATE "sessions_app_session"') and not bumped:
            bumped.append(sql)
            context["cursor"].execute('UPDATE "sessions_app_session" SET "version" = "version" + 1')
        return execute(sql, params, many, context)

    with connection.execute_wrapper(concurrent_writer):
        error = raised(protocol.CONFLICT, patch, users["alice"], session_id, 0, add("lost"))
    assert bumped, "the conditional update never ran"
    assert error.data == {"version": 1}
    assert Change.objects.count() == 0
    assert "lost" not in Session.objects.get().data


def test_a_patch_whose_version_moved_between_its_read_and_its_update_is_rebased_on_that_change(
    users: Any,
) -> None:
    # Another process's patch commits between this patch's read and its conditional update: the
    # update finds the version moved, and the patch is read, rebased and applied again.
    session_id = create(users["alice"]).session_id
    raced: list[Any] = []

    def concurrent_patch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith('UPDATE "sessions_app_session"') and not raced:
            raced.append(None)  # before: the other patch's own update passes through here too
            raced[0] = patch(users["alice"], session_id, 0, add("first"))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(concurrent_patch):
        outcome = patch(users["alice"], session_id, 0, add("second"))
    assert raced and raced[0].data == {"version": 1}
    assert outcome.data == {"version": 2, "rebased": True, "ops": add("second")}
    assert Session.objects.get().data == {"first": 1, "second": 1}
    assert list(Change.objects.order_by("version").values_list("version", "ops")) == [
        (1, add("first")),
        (2, add("second")),
    ]


def handed_on(user: dict[str, Any], session_id: Any, version: int, ops: list[Any]) -> services.PatchBase:
    """What session_patch hands to a patch worker for a document over PATCH_INLINE_BYTES."""
    with pytest.raises(services.NeedsWorker) as caught:
        services.session_patch(
            user=user, channel_name="", session_id=session_id, version=version, ops=ops, inline_work=100
        )
    return caught.value.base


def test_a_large_document_is_handed_to_a_worker_before_anything_is_written(users: Any, settings: Any) -> None:
    settings.SESSIONS_PATCH_INLINE_BYTES = 10
    session_id = create(users["alice"], {"text": "x" * 100}).session_id
    base = handed_on(users["alice"], session_id, 0, add("a"))
    assert (base.version, base.role, json.loads(base.text)) == (0, "owner", {"text": "x" * 100})
    assert Session.objects.get().version == 0 and Change.objects.count() == 0
    text = documents.apply_patch_text(base.text, add("a"))
    outcome = services.session_patch_write(user=users["alice"], channel_name="", base=base, ops=add("a"), text=text)
    assert outcome.data == {"version": 1}
    assert Session.objects.get().data == {"text": "x" * 100, "a": 1}
    assert list(Change.objects.values_list("version", "ops")) == [(1, add("a"))]


def test_a_patch_worker_result_is_refused_when_the_session_changed_meanwhile(users: Any, settings: Any) -> None:
    settings.SESSIONS_PATCH_INLINE_BYTES = 10
    session_id = create(users["alice"], {"text": "x" * 100}).session_id
    services.member_invite(user=users["alice"], session_id=session_id, username="bob", role="editor")
    base = handed_on(users["bob"], session_id, 0, add("b"))
    text = documents.apply_patch_text(base.text, add("b"))
    patch(users["alice"], session_id, 0, add("a"))  # committed while bob's patch was computed
    write = services.session_patch_write
    error = raised(protocol.CONFLICT, write, user=users["bob"], channel_name="", base=base, ops=add("b"), text=text)
    assert error.data == {"version": 1}
    # And when bob became a viewer meanwhile, his computed patch is not stored either.
    base = handed_on(users["bob"], session_id, 1, add("b"))
    services.member_invite(user=users["alice"], session_id=session_id, username="bob", role="viewer")
    raised(protocol.PERMISSION_DENIED, write, user=users["bob"], channel_name="", base=base, ops=add("b"), text=text)
    assert Session.objects.get().data == {"text": "x" * 100, "a": 1}
    assert list(Change.objects.values_list("version", flat=True)) == [1]


@pytest.mark.parametrize("role, allowed", [("editor", True), ("viewer", False)])
def test_patch_rights_follow_the_role(users: Any, role: str, allowed: bool) -> None:
    session_id = create(users["alice"]).session_id
    services.member_invite(user=users["alice"], session_id=session_id, username="bob", role=role)
    if allowed:
        assert patch(users["bob"], session_id, 0, add("a")).data == {"version": 1}
    else:
        raised(protocol.PERMISSION_DENIED, patch, users["bob"], session_id, 0, add("a"))
        assert Session.objects.get().version == 0


def test_a_stranger_cannot_patch_a_session_it_cannot_see(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    raised(protocol.NOT_FOUND, patch, users["carol"], session_id, 0, add("a"))


# --- check_document ------------------------------------------------------------------------------


def test_check_document_accepts_an_object_up_to_the_limit_in_bytes(settings: Any) -> None:
    settings.SESSIONS_MAX_DOCUMENT_BYTES = 100
    documents.check_document({"t": "x" * 92})  # exactly 100 bytes
    documents.check_document({"t": "é" * 46})  # 92 bytes of two-byte characters
    error = raised(protocol.INVALID_DATA, documents.check_document, {"t": "x" * 93})
    assert error.data == {"limit": 100}
    raised(protocol.INVALID_DATA, documents.check_document, {"t": "é" * 47})
    raised(protocol.INVALID_DATA, documents.check_document, {"t": "€" * 32})  # 48 characters, 104 bytes


@pytest.mark.parametrize("document", [[], [1], "text", 0, None, True], ids=repr)
def test_check_document_refuses_anything_but_an_object(document: Any) -> None:
    raised(protocol.INVALID_DATA, documents.check_document, document)


@pytest.mark.parametrize("document", [{"a": "\u0000"}, {"\u0000": 1}, {"a": [{"b": "x\u0000y"}]}])
def test_check_document_refuses_U0000_anywhere(document: Any) -> None:
    raised(protocol.INVALID_DATA, documents.check_document, document)


def test_check_document_accepts_the_text_backslash_u0000(settings: Any) -> None:
    documents.check_document({"a": "\\u0000", "b": "C:\\u0000dir"})


# --- join, leave, list, invite -------------------------------------------------------------------


def test_session_join_returns_the_changes_after_since_while_they_are_kept(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    services.member_invite(user=users["alice"], session_id=session_id, username="bob", role="viewer")
    for version in range(3):
        patch(users["alice"], session_id, version, add(f"k{version}"))
    outcome = services.session_join(user=users["bob"], channel_name="", session_id=session_id, since=1)
    assert [c["version"] for c in outcome.data["changes"]] == [2, 3]
    assert outcome.data["changes"][0]["by"] == users["alice"]
    assert (outcome.role, outcome.version) == ("viewer", 3)
    snapshot = services.session_join(user=users["bob"], channel_name="", session_id=session_id, since=None)
    assert snapshot.data["data"] == {"k0": 1, "k1": 1, "k2": 1}


def test_session_join_of_a_session_the_user_is_not_in_is_not_found(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    raised(
        protocol.NOT_FOUND, services.session_join, user=users["bob"], channel_name="", session_id=session_id, since=None
    )


def test_session_list_for_user_shows_memberships_most_recently_updated_first(users: Any) -> None:
    first = create(users["alice"]).session_id
    second = create(users["alice"]).session_id
    services.member_invite(user=users["alice"], session_id=first, username="bob", role="editor")
    services.member_invite(user=users["alice"], session_id=second, username="bob", role="viewer")
    patch(users["alice"], first, 0, add("a"))
    listed = selectors.session_list_for_user(user_id=users["bob"]["id"])
    assert [(s["id"], s["role"], s["version"]) for s in listed] == [
        (str(first), "editor", 1),
        (str(second), "viewer", 0),
    ]
    assert selectors.session_list_for_user(user_id=users["carol"]["id"]) == []


def test_member_invite_is_for_the_owner_and_changes_roles(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    invite = services.member_invite
    invite(user=users["alice"], session_id=session_id, username="bob", role="editor")
    raised(
        protocol.PERMISSION_DENIED, invite, user=users["bob"], session_id=session_id, username="carol", role="viewer"
    )
    raised(protocol.NOT_FOUND, invite, user=users["alice"], session_id=session_id, username="nobody", role="viewer")
    raised(protocol.INVALID_DATA, invite, user=users["alice"], session_id=session_id, username="alice", role="viewer")
    members = invite(user=users["alice"], session_id=session_id, username="bob", role="viewer").data["members"]
    assert members == [{**users["alice"], "role": "owner"}, {**users["bob"], "role": "viewer"}]
    assert Membership.objects.count() == 2


# --- revisions -----------------------------------------------------------------------------------


def test_revisions_are_numbered_from_1_per_session(users: Any) -> None:
    first = create(users["alice"], {"n": 0}).session_id
    second = create(users["alice"]).session_id
    patch(users["alice"], first, 0, [{"op": "replace", "path": "/n", "value": 1}])

    def save(session_id: Any, message: str = "") -> dict[str, Any]:
        return services.revision_create(user=users["alice"], channel_name="", session_id=session_id, message=message)

    assert save(first, "one").data == {"revision": 1, "version": 1}
    assert save(first).data == {"revision": 2, "version": 1}
    assert save(second).data == {"revision": 1, "version": 0}
    revision = Revision.objects.get(session_id=first, number=1)
    assert (revision.data, revision.message, revision.author_id) == ({"n": 1}, "one", users["alice"]["id"])


def save(user: dict[str, Any], session_id: Any) -> dict[str, Any]:
    return services.revision_create(user=user, channel_name="", session_id=session_id, message="").data


def test_a_session_keeps_its_last_revisions(users: Any, settings: Any) -> None:
    # Issue 11, item 7: 54 saves of a 1 MB document grew the revisions table by 52 MB.
    settings.SESSIONS_REVISIONS_KEEP = 3
    session_id = create(users["alice"], {"text": "x" * 1000}).session_id
    other = create(users["alice"]).session_id
    save(users["alice"], other)
    assert [save(users["alice"], session_id)["revision"] for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    assert list(Revision.objects.filter(session_id=session_id).values_list("number", flat=True)) == [6, 5, 4]
    assert Revision.objects.filter(session_id=other).count() == 1
    text = selectors.session_document_text(session_id=session_id)
    assert set(Revision.objects.filter(session_id=session_id).values_list("size", flat=True)) == {len(text.encode())}


def test_a_save_past_the_owners_revision_bytes_is_quota_exceeded(users: Any, settings: Any) -> None:
    session_id = create(users["alice"], {"text": "x" * 1000}).session_id
    services.member_invite(user=users["alice"], session_id=session_id, username="bob", role="editor")
    size = save(users["alice"], session_id) and Revision.objects.get().size
    settings.SESSIONS_REVISION_BYTES_PER_USER = 3 * size
    save(users["alice"], session_id)
    save(users["bob"], session_id)  # an editor's save counts towards the owner's bytes
    error = raised(protocol.QUOTA_EXCEEDED, save, users["bob"], session_id)
    assert error.data == {"limit": 3 * size, "used": 3 * size}
    assert "owner's" in error.message
    error = raised(protocol.QUOTA_EXCEEDED, save, users["alice"], session_id)
    assert "your" in error.message
    assert Revision.objects.count() == 3
    # Bob's own sessions are his own quota.
    assert save(users["bob"], create(users["bob"], {"text": "x" * 1000}).session_id)["revision"] == 1


def test_a_save_that_prunes_the_oldest_revision_fits_in_the_room_it_frees(users: Any, settings: Any) -> None:
    settings.SESSIONS_REVISIONS_KEEP = 2
    session_id = create(users["alice"], {"text": "x" * 1000}).session_id
    save(users["alice"], session_id)
    settings.SESSIONS_REVISION_BYTES_PER_USER = 2 * Revision.objects.get().size
    assert [save(users["alice"], session_id)["revision"] for _ in range(4)] == [2, 3, 4, 5]
    assert list(Revision.objects.values_list("number", flat=True)) == [5, 4]
    error = raised(protocol.QUOTA_EXCEEDED, save, users["alice"], create(users["alice"]).session_id)
    assert error.data["used"] == 2 * Revision.objects.first().size


def test_a_viewer_cannot_record_a_revision(users: Any) -> None:
    session_id = create(users["alice"]).session_id
    services.member_invite(user=users["alice"], session_id=session_id, username="bob", role="viewer")
    raised(
        protocol.PERMISSION_DENIED,
        services.revision_create,
        user=users["bob"],
        channel_name="",
        session_id=session_id,
        message="",
    )
    assert Revision.objects.count() == 0


# --- connections, presence and the heartbeat -----------------------------------------------------


def test_presence_counts_each_user_once_and_ignores_connections_not_joined(users: Any) -> None:
    presence.server_heartbeat()
    open_connection(users["bob"], "b1")
    open_connection(users["alice"], "a1")
    open_connection(users["alice"], "a2")
    open_connection(users["carol"], "c1")
    session_id = create(users["alice"], channel="a1").session_id
    services.member_invite(user=users["alice"], session_id=session_id, username="bob", role="viewer")
    services.session_join(user=users["alice"], channel_name="a2", session_id=session_id, since=None)
    services.session_join(user=users["bob"], channel_name="b1", session_id=session_id, since=None)
    assert selectors.presence_for_session(session_id=session_id) == [users["alice"], users["bob"]]


def test_connection_close_pushes_presence_only_for_the_users_last_tab(users: Any) -> None:
    presence.server_heartbeat()
    open_connection(users["alice"], "a1")
    open_connection(users["alice"], "a2")
    session_id = create(users["alice"], channel="a1").session_id
    assert services.session_join(user=users["alice"], channel_name="a2", session_id=session_id, since=None).pushes == []
    alice = users["alice"]
    assert presence.connection_close(channel_name="a1", user=alice, session_id=session_id) == []
    [left] = presence.connection_close(channel_name="a2", user=alice, session_id=session_id)
    assert json.loads(left.message["text"])["data"] == {
        "session": str(session_id),
        "present": [],
        "left": users["alice"],
    }
    assert presence.connection_close(channel_name="a2", user=alice, session_id=session_id) == []  # idempotent


def test_connection_close_of_a_connection_that_joined_nothing_only_deletes_its_row(users: Any) -> None:
    presence.server_heartbeat()
    open_connection(users["alice"], "a1")
    assert presence.connection_close(channel_name="a1", user=users["alice"], session_id=None) == []
    assert not Connection.objects.filter(pk="a1").exists()


def test_connections_of_a_process_past_the_ttl_stop_counting_as_present(users: Any) -> None:
    presence.server_heartbeat()
    stale = timezone.now() - timedelta(seconds=app_settings.PRESENCE_TTL + 5)
    ServerProcess.objects.create(id="stalled", heartbeat_at=stale)
    open_connection(users["alice"], "a1")
    open_connection(users["bob"], "b1", server="stalled")
    session_id = create(users["alice"], channel="a1").session_id
    services.member_invite(user=users["alice"], session_id=session_id, username="bob", role="viewer")
    Connection.objects.filter(pk="b1").update(session_id=session_id)
    assert selectors.presence_for_session(session_id=session_id) == [users["alice"]]


def test_server_heartbeat_removes_a_dead_process_with_its_connections_and_returns_presence(users: Any) -> None:
    presence.server_heartbeat()
    ServerProcess.objects.create(
        id="dead", heartbeat_at=timezone.now() - timedelta(seconds=app_settings.PRESENCE_TTL + 5)
    )
    ServerProcess.objects.create(id="young", heartbeat_at=timezone.now() - timedelta(seconds=1))
    open_connection(users["alice"], "a1")
    session_id = create(users["alice"], channel="a1").session_id
    for name in ("bob", "carol"):
        services.member_invite(user=users["alice"], session_id=session_id, username=name, role="viewer")
    open_connection(users["bob"], "b-dead", server="dead")
    open_connection(users["carol"], "c-dead", server="dead")
    open_connection(users["carol"], "c-young", server="young")  # carol is still there elsewhere
    open_connection(users["bob"], "b-idle", server="dead")  # not joined: no presence change
    Connection.objects.filter(pk__in=["b-dead", "c-dead", "c-young"]).update(session_id=session_id)

    pushes = presence.server_heartbeat()

    assert set(ServerProcess.objects.values_list("pk", flat=True)) == {presence.SERVER_ID, "young"}
    assert set(Connection.objects.values_list("pk", flat=True)) == {"a1", "c-young"}
    [event] = pushes
    assert event.group == f"session.{session_id.hex}"
    assert event.message["exclude"] == ""
    assert json.loads(event.message["text"]) == {
        "state": "presence",
        "data": {"session": str(session_id), "present": [users["alice"], users["carol"]], "left": users["bob"]},
    }
    assert presence.server_heartbeat() == []


def test_server_heartbeat_refreshes_this_process(users: Any) -> None:
    ServerProcess.objects.create(id=presence.SERVER_ID, heartbeat_at=timezone.now() - timedelta(days=1))
    assert presence.server_heartbeat() == []
    beat = ServerProcess.objects.get(pk=presence.SERVER_ID).heartbeat_at
    assert timezone.now() - beat < timedelta(seconds=5)
