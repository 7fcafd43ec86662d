"""History in the page (issue 12, item 4): the revisions and recent changes with who and when, a
revision's read-only view, and "Restore this revision", which both browsers then show.

Screenshots of each state go to ``$E2E_SHOTS`` (tests/e2e/ui.py): ``history-list``,
``history-empty``, ``history-revision`` (and ``-dark``), ``history-confirm``, ``history-restored-owner``,
``history-restored-editor`` and ``history-viewer-revision``.
"""

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import DESKTOP
from tests.e2e.test_accessibility import violations
from tests.e2e.ui import (
    add_item,
    create_session,
    error_notices,
    expect_all_sent,
    expect_items,
    open_session,
    shot,
    sign_in,
)
from tests.wsclient import BlockingClient

pytestmark = pytest.mark.e2e


def revision_texts(page):
    return page.locator("#revision-items .item-text").evaluate_all("(inputs) => inputs.map((i) => i.value)")


def test_history_lists_who_changed_what_and_a_restore_reaches_both_windows(server, new_page):
    alice = new_page(DESKTOP)
    sign_in(alice, server, "alice")
    session_id = create_session(alice, "Groceries")
    alice.get_by_label("Invite by username").fill("bob")
    alice.get_by_role("button", name="Invite").click()
    expect(alice.locator("#member-list")).to_contain_text("bob")
    add_item(alice, "Milk")
    add_item(alice, "Eggs")
    alice.get_by_role("button", name="Show history").click()
    expect(alice.locator("#revisions-empty")).to_have_text("No revision saved yet: “Save and close” below saves one.")
    expect(alice.locator("#change-list li")).to_have_count(2)
    shot(alice, "history-empty")
    alice.get_by_role("button", name="Hide history").click()
    expect(alice.locator("#history-body")).to_be_hidden()
    alice.get_by_label("Note for this revision").fill("Weekly basics")
    alice.get_by_role("button", name="Save and close").click()
    expect(alice.locator("#notices")).to_contain_text("Saved “Groceries” as revision 1")

    bob = new_page()
    sign_in(bob, server, "bob")
    open_session(bob, server, session_id)
    open_session(alice, server, session_id)

    # Edits after the revision, by both.
    alice.get_by_label("Done: Milk").check()
    bob.get_by_role("button", name="Remove “Eggs”").click()
    add_item(bob, "Tea")
    for page in (alice, bob):
        expect_items(page, ["Milk", "Tea"])
        expect_all_sent(page)

    # The history: the revision with its note and author, the changes newest first with theirs.
    alice.get_by_role("button", name="Show history").click()
    expect(alice.get_by_role("button", name="Hide history")).to_have_attribute("aria-expanded", "true")
    revisions = alice.locator("#revision-list li")
    expect(revisions).to_have_count(1)
    expect(revisions.first).to_contain_text("Revision 1 · “Weekly basics”")
    expect(revisions.first).to_contain_text("alice (you)")
    changes = alice.locator("#change-list li")
    expect(changes).to_have_count(5)
    expect(changes.nth(0)).to_contain_text("bob added “Tea”")
    expect(changes.nth(1)).to_contain_text("bob removed item 2")
    expect(changes.nth(2)).to_contain_text("alice (you) ticked item 1")
    expect(changes.nth(3)).to_contain_text("alice (you) added “Eggs”")
    expect(changes.nth(4)).to_contain_text("alice (you) added “Milk”")
    expect(changes.nth(0)).to_contain_text("version 5")
    shot(alice, "history-list")

    # A revision, read-only, drawn as the checklist.
    alice.get_by_role("button", name="View revision 1").click()
    view = alice.get_by_role("region", name="Revision 1: “Weekly basics”")
    expect(view).to_be_visible()
    expect(view.get_by_role("heading", name="Revision 1: “Weekly basics”")).to_be_focused()
    expect(view).to_contain_text("Saved by alice (you)")
    assert revision_texts(alice) == ["Milk", "Eggs"]
    expect(view.locator(".item-text").first).not_to_be_editable()
    expect(view.get_by_label("Done: Milk")).not_to_be_checked()
    expect(view.get_by_label("Done: Milk")).to_be_disabled()
    expect(view.get_by_role("button", name="Remove “Milk”")).to_be_hidden()
    expect_items(alice, ["Milk", "Tea"])  # the session itself is unchanged
    shot(alice, "history-revision")
    assert violations(alice) == [], "session page with the history and a revision open"
    alice.emulate_media(color_scheme="dark")
    shot(alice, "history-revision-dark")
    assert violations(alice) == [], "the same, dark"
    alice.emulate_media(color_scheme="light")

    # Restore, confirmed first; cancelling changes nothing.
    view.get_by_role("button", name="Restore this revision").click()
    expect(view.get_by_role("group")).to_contain_text("Make the session what it was in revision 1?")
    expect(view.get_by_role("button", name="Cancel")).to_be_focused()
    view.get_by_role("button", name="Cancel").click()
    expect(view.get_by_role("group")).to_be_hidden()
    view.get_by_role("button", name="Restore this revision").click()
    shot(alice, "history-confirm")
    view.get_by_role("button", name="Restore revision 1").click()

    expect(alice.locator("#notices")).to_contain_text("Restored revision 1")
    for page in (alice, bob):
        expect_items(page, ["Milk", "Eggs"])
        expect(page.locator("#items").get_by_label("Done: Milk")).not_to_be_checked()
        expect_all_sent(page)
    expect(bob.locator("#notices")).to_contain_text("alice restored revision 1")
    expect(view).to_be_hidden()
    expect(changes.nth(0)).to_contain_text("alice (you) restored revision 1")
    expect(changes.nth(0)).to_contain_text("version 6")
    shot(alice, "history-restored-owner")

    # The other window's history names the restore and its author; the edits go on from there.
    bob.get_by_role("button", name="Show history").click()
    expect(bob.locator("#change-list li").first).to_contain_text("alice restored revision 1")
    expect(bob.locator("#change-list li").nth(1)).to_contain_text("bob (you) added “Tea”")
    add_item(bob, "Bread")
    expect_items(alice, ["Milk", "Eggs", "Bread"])
    expect(bob.locator("#change-list li").first).to_contain_text("bob (you) added “Bread”")
    shot(bob, "history-restored-editor")

    assert error_notices(alice) == [] and error_notices(bob) == []
    with BlockingClient(server.ws, server.token("bob")) as check:
        snapshot = check.ok("join", {"session": session_id})
    assert [(i["text"], i["done"]) for i in snapshot["data"]["items"]] == [
        ("Milk", False),
        ("Eggs", False),
        ("Bread", False),
    ]
    assert snapshot["version"] == 7


def test_a_viewer_sees_the_history_and_revisions_but_cannot_restore(server, new_page):
    with BlockingClient(server.ws, server.token("alice")) as alice:
        session_id = alice.ok("create", {"title": "Plan", "data": {"items": ["Book venue"], "budget": 300}})["id"]
        alice.ok("invite", {"username": "carol", "role": "viewer"})
        alice.ok("save", {"message": "first draft"})
    with BlockingClient(server.ws, server.token("alice")) as alice:
        alice.ok("join", {"session": session_id})
        for version, budget in enumerate([*range(301, 324), 450]):
            alice.ok("patch", {"version": version, "ops": [{"op": "replace", "path": "/budget", "value": budget}]})

    carol = new_page()
    sign_in(carol, server, "carol")
    open_session(carol, server, session_id)
    carol.get_by_role("button", name="Show history").click()
    expect(carol.locator("#change-list li").first).to_contain_text("alice set budget to 450")
    expect(carol.locator("#change-list li")).to_have_count(20)
    carol.get_by_role("button", name="Show older changes").click()
    expect(carol.locator("#change-list li")).to_have_count(24)
    expect(carol.locator("#change-list li").last).to_contain_text("alice set budget to 301")
    expect(carol.get_by_role("button", name="Show older changes")).to_be_hidden()
    carol.get_by_role("button", name="View revision 1").click()
    view = carol.get_by_role("region", name="Revision 1: “first draft”")
    expect(view).to_contain_text("budget")
    expect(view).to_contain_text("300")
    assert revision_texts(carol) == ["Book venue"]
    expect(view.get_by_role("button", name="Restore this revision")).to_be_hidden()
    shot(carol, "history-viewer-revision")
    view.get_by_role("button", name="Close revision").click()
    expect(view).to_be_hidden()
    expect(carol.get_by_role("button", name="View revision 1")).to_be_focused()
    assert error_notices(carol) == []
