"""Documents the page did not write, two people on one item, avatars and notices."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import DESKTOP
from tests.e2e.ui import add_item, error_notices, expect_all_sent, expect_items, open_session, shot, sign_in
from tests.wsclient import BlockingClient

pytestmark = pytest.mark.e2e


def join_data(server, session_id: str) -> dict:
    with BlockingClient(server.ws, server.token("alice")) as check:
        return check.ok("join", {"session": session_id})["data"]


def test_the_readme_example_session_is_shown_and_grows_in_its_own_shape(server, new_page):
    # Exactly the README's "An example session": create with {"items": []}, then add "milk".
    with BlockingClient(server.ws, server.token("alice")) as alice:
        session_id = alice.ok("create", {"title": "Groceries", "data": {"items": []}})["id"]
        alice.ok("patch", {"version": 0, "ops": [{"op": "add", "path": "/items/-", "value": "milk"}]})
    page = new_page()
    sign_in(page, server, "alice")
    open_session(page, server, session_id)
    expect_items(page, ["milk"])
    expect(page.locator("#items-empty")).to_be_hidden()
    expect(page.locator("#foreign-note")).to_contain_text("plain text entries")
    add_item(page, "eggs")
    expect_all_sent(page)
    assert join_data(server, session_id) == {"items": ["milk", "eggs"]}, "strings stay strings: no mixed array"

    # A string entry can be edited, moved and removed like an item (it has nothing to tick).
    page.locator("#items .item-text").first.fill("oat milk")
    page.locator("#items .item-text").first.press("Enter")
    page.get_by_role("button", name="Move “eggs” up").click()
    expect_items(page, ["eggs", "oat milk"])
    expect_all_sent(page)
    assert join_data(server, session_id) == {"items": ["eggs", "oat milk"]}
    assert error_notices(page) == []


def test_a_document_of_another_shape_is_shown_readably(server, new_page):
    data = {
        "items": ["milk", 3, {"name": "tea", "qty": 2}, {"id": "x1", "text": "Bread", "done": True}],
        "owner": {"name": "Ada", "tags": ["a", "b"]},
        "count": 7,
    }
    with BlockingClient(server.ws, server.token("alice")) as alice:
        session_id = alice.ok("create", {"title": "Imported", "data": data})["id"]
        other = alice.ok("create", {"title": "Settings", "data": {"theme": "dark", "items": "not a list"}})["id"]
    page = new_page(DESKTOP)
    sign_in(page, server, "alice")
    open_session(page, server, session_id)
    items = page.locator("#items > li")
    expect(items).to_have_count(4)
    expect(items.nth(0).locator(".item-text")).to_have_value("milk")
    expect(items.nth(1)).to_contain_text("3")
    expect(items.nth(2)).to_contain_text("name: tea, qty: 2")
    expect(page.get_by_label("Done: Bread")).to_be_checked()
    expect(page.locator("#foreign-note")).to_contain_text("2 entries of another kind are shown read-only")
    other_data = page.locator("#other-data")
    expect(other_data).to_be_visible()
    expect(other_data).to_contain_text("owner")
    expect(other_data).to_contain_text("Ada")
    expect(other_data).to_contain_text("count")
    shot(page, "foreign-document")

    # `items` that is not a list: shown, and no add form that would replace it.
    open_session(page, server, other)
    expect(page.locator("#other-data")).to_contain_text("not a list")
    expect(page.locator("#other-data")).to_contain_text("theme")
    expect(page.get_by_label("New item")).to_be_hidden()
    assert error_notices(page) == []


def test_someone_elses_change_to_the_item_being_edited_is_shown_with_a_choice(server, new_page):
    with BlockingClient(server.ws, server.token("alice")) as alice:
        session_id = alice.ok(
            "create", {"title": "Menu", "data": {"items": [{"id": "m", "text": "Milk", "done": False}]}}
        )["id"]
        alice.ok("invite", {"username": "bob", "role": "editor"})
    alice = new_page(DESKTOP)
    sign_in(alice, server, "alice")
    open_session(alice, server, session_id)
    bob = new_page(DESKTOP)
    sign_in(bob, server, "bob")
    open_session(bob, server, session_id)

    # Alice is typing in the item (not sent yet) when bob changes it.
    field = alice.locator("#items .item-text").first
    field.click()
    field.fill("Oat milk")
    bob.locator("#items .item-text").first.fill("Soy milk")
    bob.locator("#items .item-text").first.press("Enter")
    expect_all_sent(bob)
    conflict = alice.locator("#items .item-conflict")
    expect(conflict).to_contain_text("bob changed this item to “Soy milk” while you were typing.")
    expect(field).to_have_value("Oat milk")  # her text is not overwritten either
    shot(alice, "concurrent-edit")
    alice.get_by_role("button", name="Keep mine").click()
    expect(conflict).to_have_count(0)
    expect_items(bob, ["Oat milk"])
    expect_all_sent(alice)

    # The other way: bob types, alice changes it, bob takes hers.
    field = bob.locator("#items .item-text").first
    field.click()
    field.fill("Rice milk")
    alice.locator("#items .item-text").first.fill("Almond milk")
    alice.locator("#items .item-text").first.press("Enter")
    expect(bob.locator("#items .item-conflict")).to_contain_text("alice changed this item to “Almond milk”")
    bob.get_by_role("button", name="Use theirs").click()
    expect(bob.locator("#items .item-conflict")).to_have_count(0)
    expect_items(bob, ["Almond milk"])
    bob.locator("#new-item").click()  # leaving the field sends nothing: the choice was theirs
    expect_all_sent(bob)
    assert [i["text"] for i in join_data(server, session_id)["items"]] == ["Almond milk"]
    assert error_notices(alice) == [] and error_notices(bob) == []


def test_avatars_differ_per_user_and_notices_replace_each_other(server, new_page):
    with BlockingClient(server.ws, server.token("alice")) as alice:
        session_id = alice.ok("create", {"title": "Faces", "data": {"items": []}})["id"]
        alice.ok("invite", {"username": "bob", "role": "editor"})
    alice = new_page(DESKTOP)
    sign_in(alice, server, "alice")
    open_session(alice, server, session_id)
    bob = new_page(DESKTOP)
    sign_in(bob, server, "bob")
    open_session(bob, server, session_id)
    expect(alice.locator("#presence-list .avatar")).to_have_count(2)
    colors = alice.locator("#presence-list .avatar").evaluate_all(
        "(nodes) => nodes.map((n) => getComputedStyle(n).backgroundColor)"
    )
    assert len(set(colors)) == 2, colors
    initials = alice.locator("#presence-list .avatar").all_inner_texts()
    assert sorted(initials) == ["A", "B"]

    # Two notices in a row: the newest replaces the first, no pile-up.
    for name in ("nobody-1", "nobody-2"):
        alice.get_by_label("Invite by username").fill(name)
        alice.get_by_role("button", name="Invite").click()
        expect(alice.locator("#notices")).to_contain_text(f"Inviting {name} failed")
    expect(alice.locator("#notices .notice")).to_have_count(1)
    expect(alice.locator("#notices")).not_to_contain_text("nobody-1")
    # Information goes by itself.
    alice.get_by_label("Invite by username").fill("carol")
    alice.get_by_role("button", name="Invite").click()
    expect(alice.locator("#notices .notice")).to_have_count(1)
    expect(alice.locator("#notices")).to_contain_text("carol can now edit")
    expect(alice.locator("#notices .notice")).to_have_count(0, timeout=15_000)
    expect(alice.locator("#presence-list")).to_contain_text(re.compile("bob"))
