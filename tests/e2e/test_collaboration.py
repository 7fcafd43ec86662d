"""Two people on one session in two browsers: live edits, presence, conflicts, and a viewer."""

import time

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import DESKTOP
from tests.e2e.ui import (
    add_item,
    create_session,
    error_notices,
    expect_all_sent,
    expect_items,
    item_texts,
    open_session,
    sign_in,
)
from tests.wsclient import BlockingClient

pytestmark = pytest.mark.e2e


def test_two_users_see_each_others_edits_and_presence(server, new_page):
    alice = new_page()
    sign_in(alice, server, "alice")
    session_id = create_session(alice, "Groceries")

    # The owner invites bob as an editor from the page.
    alice.get_by_label("Invite by username").fill("bob")
    alice.get_by_label("Role").select_option("editor")
    alice.get_by_role("button", name="Invite").click()
    expect(alice.locator("#notices")).to_contain_text("bob can now edit this session.")
    expect(alice.locator("#member-list")).to_contain_text("bob")

    bob = new_page(DESKTOP)
    sign_in(bob, server, "bob")
    bob.get_by_role("link", name="Groceries").click()
    expect(bob.locator("#role-badge")).to_have_text("Editor")
    expect(bob.locator("#connection")).to_have_attribute("data-status", "connected")
    assert session_id in bob.url

    # Presence, both ways.
    expect(alice.locator("#presence-list")).to_contain_text("bob")
    expect(bob.locator("#presence-list")).to_contain_text("alice")
    expect(bob.locator("#presence-list")).to_contain_text("bob (you)")

    # Alice adds, bob sees; bob ticks and edits, alice sees.
    add_item(alice, "Milk")
    add_item(alice, "Eggs")
    expect_items(bob, ["Milk", "Eggs"])
    bob.get_by_label("Done: Milk").check()
    expect(alice.get_by_label("Done: Milk")).to_be_checked()
    bob.locator("#items .item-text").nth(1).fill("Free-range eggs")
    bob.locator("#items .item-text").nth(1).press("Enter")
    expect_items(alice, ["Milk", "Free-range eggs"])

    # Alice reorders, bob removes.
    alice.get_by_role("button", name="Move “Free-range eggs” up").click()
    expect_items(bob, ["Free-range eggs", "Milk"])
    bob.get_by_role("button", name="Remove “Milk”").click()
    expect_items(alice, ["Free-range eggs"])

    # Both type at once (timers aimed at the same instant): the patches meet on the version and
    # are rebased by the server (appends commute) without the user seeing it.
    collided: list[str] = []
    for page in (alice, bob):
        page.on(
            "websocket",
            lambda ws: ws.on(
                "framereceived",
                lambda f: collided.append(f) if '"conflict"' in f or '"rebased":true' in f else None,
            ),
        )
        page.reload()  # reconnect, so the new socket is observed
        expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
        expect_items(page, ["Free-range eggs"])
    start_at = int(time.time() * 1000) + 1000
    for page, who in ((alice, "A"), (bob, "B")):
        page.evaluate(
            """([who, startAt]) => setTimeout(() => {
                const form = document.querySelector("#add-form");
                for (let i = 1; i <= 5; i += 1) {
                    form.querySelector("input").value = `${who}${i}`;
                    form.requestSubmit();
                }
            }, startAt - Date.now())""",
            [who, start_at],
        )
    for page in (alice, bob):
        expect(page.locator("#items .item-text")).to_have_count(11)
        expect_all_sent(page)
    assert item_texts(alice) == item_texts(bob)
    texts = item_texts(alice)
    assert [t for t in texts if t.startswith("A")] == ["A1", "A2", "A3", "A4", "A5"]
    assert [t for t in texts if t.startswith("B")] == ["B1", "B2", "B3", "B4", "B5"]
    assert collided, "the two pages were meant to meet on one version at least once"
    assert error_notices(alice) == [] and error_notices(bob) == [], "conflicts must not reach the user"

    # Bob leaves: alice's presence bar drops him.
    bob.goto(server.http + "/")
    expect(alice.locator("#presence-list")).not_to_contain_text("bob")

    # The server holds what the pages show.
    with BlockingClient(server.ws, server.token("alice")) as check:
        data = check.ok("join", {"session": session_id})["data"]
    assert [item["text"] for item in data["items"]] == texts


def test_a_viewer_follows_the_session_but_cannot_edit(server, new_page):
    with BlockingClient(server.ws, server.token("alice")) as alice:
        snapshot = alice.ok(
            "create",
            {"title": "Launch plan", "data": {"items": [{"id": "i1", "text": "Book venue", "done": False}]}},
        )
        session_id = snapshot["id"]
        alice.ok("invite", {"username": "carol", "role": "viewer"})

        carol = new_page()
        sign_in(carol, server, "carol")
        expect(carol.locator("#session-list")).to_contain_text("Viewer")
        open_session(carol, server, session_id)

        expect(carol.locator("#role-badge")).to_have_text("Viewer (read-only)")
        expect(carol.locator("#read-only-note")).to_be_visible()
        expect(carol.get_by_label("New item")).to_be_hidden()
        expect(carol.get_by_role("button", name="Save and close")).to_be_hidden()
        expect(carol.get_by_role("button", name="Invite")).to_be_hidden()
        expect(carol.get_by_label("Done: Book venue")).to_be_disabled()
        expect(carol.locator("#items .item-text").first).not_to_be_editable()
        expect(carol.get_by_role("button", name="Remove “Book venue”")).to_be_hidden()

        # Typing and clicking change nothing.
        carol.locator("#items .item-text").first.press_sequentially("zzz")
        carol.locator("#items .item-text").first.press("Enter")
        expect_items(carol, ["Book venue"])

        # A viewer still receives the others' changes live.
        alice.ok("join", {"session": session_id})
        alice.ok(
            "patch",
            {
                "version": 0,
                "ops": [
                    {"op": "add", "path": "/items/-", "value": {"id": "i2", "text": "Send invitations", "done": False}}
                ],
            },
        )
        expect_items(carol, ["Book venue", "Send invitations"])
        assert alice.ok("join", {"session": session_id})["version"] == 1, "the viewer changed nothing"
    assert error_notices(carol) == []
