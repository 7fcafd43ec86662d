"""Live membership in two browsers: invites, roles, renames, removals, deletions, leaving, and the
sockets the server ends (issue 12, items 2 and 3). Screenshots of the states go to $E2E_SHOTS."""

import contextlib
import sqlite3
from html.parser import HTMLParser
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests import live
from tests.adminhttp import Admin
from tests.e2e.conftest import DESKTOP
from tests.e2e.ui import (
    SESSION_URL,
    add_item,
    create_session,
    expect_items,
    local_storage,
    refresh_cookie,
    shot,
    sign_in,
)
from tests.wsclient import BlockingClient

pytestmark = pytest.mark.e2e


def invite(page: Page, username: str, role: str) -> None:
    page.get_by_label("Invite by username").fill(username)
    page.get_by_label("Role", exact=True).select_option(role)
    page.get_by_role("button", name="Invite").click()
    expect(page.locator("#member-list")).to_contain_text(username)


def row(page: Page, title: str):
    return page.locator("#session-list .session-row").filter(has_text=title)


def make_staff(server: live.Daphne, username: str) -> None:
    path = server.env["DATABASE_URL"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn, conn:
        conn.execute("UPDATE auth_user SET is_staff = 1, is_superuser = 1 WHERE username = ?", (username,))


def live_client(server: live.Daphne, username: str) -> BlockingClient:
    return BlockingClient(server.ws, server.token(username))


def user_id(server: live.Daphne, username: str) -> int:
    query = "SELECT id FROM auth_user WHERE username = ?"
    return live.sqlite_query(server.env["DATABASE_URL"], query, (username,))[0][0]


def test_an_invite_a_role_change_and_a_rename_reach_the_other_browser_at_once(server, new_page):
    alice = new_page(DESKTOP)
    sign_in(alice, server, "alice")
    bob = new_page()
    sign_in(bob, server, "bob")
    expect(bob.locator("#sessions-empty")).to_be_visible()
    create_session(alice, "Groceries")
    add_item(alice, "Milk")

    # The invite: bob's list shows the session without a reload.
    invite(alice, "bob", "viewer")
    expect(row(bob, "Groceries")).to_contain_text("Viewer")
    expect(bob.locator("#notices")).to_contain_text("alice invited you to “Groceries” as a viewer.")
    shot(bob, "membership-invited-list")

    row(bob, "Groceries").get_by_role("link").click()
    expect(bob.locator("#role-badge")).to_have_text("Viewer (read-only)")
    expect(bob.get_by_label("New item")).to_be_hidden()
    expect(bob.locator("#items .item-text").first).not_to_be_editable()
    expect(bob.get_by_role("button", name="Invite")).to_be_hidden()
    expect(bob.get_by_role("button", name="Rename")).to_be_hidden()
    # Every member sees the members and their roles.
    expect(bob.locator("#member-list")).to_contain_text("alice")
    expect(bob.locator("#member-list")).to_contain_text("bob (you)")
    expect(bob.locator("#member-list [data-username=alice] .badge")).to_have_text("owner")
    expect(bob.locator("#member-list [data-username=bob] .badge")).to_have_text("viewer")

    # Promoted to editor: bob gets the controls at once, and can type.
    alice.get_by_label("Role of bob").select_option("editor")
    expect(alice.locator("#notices")).to_contain_text("bob is now an editor.")
    expect(bob.locator("#role-badge")).to_have_text("Editor")
    expect(bob.locator("#notices")).to_contain_text("alice made you an editor")
    expect(bob.get_by_label("New item")).to_be_visible()
    expect(bob.locator("#member-list [data-username=bob] .badge")).to_have_text("editor")
    add_item(bob, "Eggs")
    expect_items(alice, ["Milk", "Eggs"])
    shot(bob, "membership-promoted")

    # Back to viewer: the controls go at once.
    alice.get_by_label("Role of bob").select_option("viewer")
    expect(bob.locator("#role-badge")).to_have_text("Viewer (read-only)")
    expect(bob.get_by_label("New item")).to_be_hidden()
    expect(bob.locator("#items .item-text").first).not_to_be_editable()
    expect(bob.get_by_role("button", name="Remove “Milk”")).to_be_hidden()
    expect(bob.locator("#read-only-note")).to_be_visible()

    # Another member invited: bob's member list grows (the `members` push).
    invite(alice, "carol", "editor")
    expect(bob.locator("#member-list [data-username=carol] .badge")).to_have_text("editor")

    # The rename: bob's title changes, and so does carol's list.
    carol = new_page()
    sign_in(carol, server, "carol")
    expect(row(carol, "Groceries")).to_be_visible()
    alice.get_by_label("Session title").fill("Weekend groceries")
    alice.get_by_role("button", name="Rename").click()
    expect(alice.locator("#session-title")).to_have_text("Weekend groceries")
    expect(bob.locator("#session-title")).to_have_text("Weekend groceries")
    expect(row(carol, "Weekend groceries")).to_contain_text("Editor")
    shot(alice, "membership-owner-controls")
    shot(bob, "membership-renamed-viewer")


def test_a_removed_member_and_a_deleted_session_leave_for_the_list(server, new_page):
    alice = new_page(DESKTOP)
    sign_in(alice, server, "alice")
    kept_id = create_session(alice, "Kept")
    invite(alice, "bob", "editor")
    alice.goto(server.http + "/")
    create_session(alice, "Doomed")
    invite(alice, "bob", "editor")
    doomed_url = alice.url

    bob = new_page()
    sign_in(bob, server, "bob")
    expect(row(bob, "Kept")).to_be_visible()
    bob.goto(f"{server.http}/sessions/{kept_id}/")
    expect(bob.locator("#role-badge")).to_have_text("Editor")
    expect(bob.locator("#connection")).to_have_attribute("data-status", "connected")

    # Removed while on the session page: bob is told and taken to his list, which no longer has it.
    alice.goto(f"{server.http}/sessions/{kept_id}/")
    expect(alice.locator("#presence-list")).to_contain_text("bob")
    alice.get_by_role("button", name="Remove bob").click()
    expect(alice.locator("#member-list")).not_to_contain_text("bob")
    expect(bob).to_have_url(server.http + "/")
    expect(bob.locator("#notices")).to_contain_text("alice removed you from “Kept”: you can no longer open it.")
    expect(row(bob, "Doomed")).to_be_visible()
    expect(row(bob, "Kept")).to_have_count(0)
    shot(bob, "membership-removed")

    # The session deleted by an operator in the admin: bob, on its page, is taken to his list,
    # where it is gone (the owner's own "Delete session" button: the next test).
    bob.goto(doomed_url)
    expect(bob.locator("#role-badge")).to_have_text("Editor")
    expect(bob.locator("#connection")).to_have_attribute("data-status", "connected")
    make_staff(server, "erin")
    admin = Admin(server.http, "erin", live.PASSWORD)
    doomed_id = SESSION_URL.search(doomed_url).group(1)
    status, page = admin.post(
        "/admin/sessions_app/session/",
        {"action": "delete_selected", "_selected_action": [doomed_id], "index": "0", "post": "yes"},
    )
    assert status == 200 and "Successfully deleted" in page, page[:2000]
    expect(bob).to_have_url(server.http + "/")
    expect(bob.locator("#notices")).to_contain_text("“Doomed” was deleted.")
    expect(bob.locator("#sessions-empty")).to_be_visible()


def bob_edits_alices_session_offline(server: live.Daphne, new_page: Any, title: str) -> tuple[str, Page]:
    """alice shares ``title`` with bob as an editor; bob opens it, the server stops, and bob adds an
    item (kept in the outbox: it cannot be sent now). Returns the session id and bob's page."""
    with live_client(server, "alice") as alice_ws:
        session_id = alice_ws.ok("create", {"title": title, "data": {"items": []}})["id"]
        alice_ws.ok("invite", {"username": "bob", "role": "editor"})
    bob = new_page()
    sign_in(bob, server, "bob")
    row(bob, title).get_by_role("link").click()
    expect(bob.locator("#role-badge")).to_have_text("Editor")
    server.stop()
    expect(bob.locator("#connection")).not_to_have_attribute("data-status", "connected")
    add_item(bob, "Made while the server was away")
    return session_id, bob


def test_a_member_removed_while_disconnected_is_sent_to_the_list_at_the_reconnect(server, new_page):
    session_id, bob = bob_edits_alices_session_offline(server, new_page, "Offline removal")
    # Removed while no server runs: no push can reach the page.
    path = server.env["DATABASE_URL"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn, conn:
        conn.execute(
            "DELETE FROM sessions_app_membership WHERE session_id = ?"
            " AND user_id = (SELECT id FROM auth_user WHERE username = 'bob')",
            (session_id.replace("-", ""),),
        )
    server.start()  # same port, same database
    expect(bob).to_have_url(server.http + "/")
    expect(bob.locator("#notices")).to_contain_text("You can no longer open “Offline removal”")
    # The change made meanwhile can never be sent: the page says so, and the device keeps nothing.
    expect(bob.locator("#notices")).to_contain_text("1 change you made had not reached the server and was discarded.")
    expect(row(bob, "Offline removal")).to_have_count(0)
    assert not [key for key in local_storage(bob) if key.startswith("sessions.outbox")]


def test_changes_kept_for_a_session_deleted_while_its_tab_was_closed_are_dropped_and_told(server, new_page):
    session_id, bob = bob_edits_alices_session_offline(server, new_page, "Gone meanwhile")
    tab = bob.context.new_page()  # another tab of the same browser, to come back with
    bob.close()  # the tab with the unsent change closes: its record stays in localStorage
    server.start()
    with live_client(server, "alice") as alice_ws:
        alice_ws.ok("join", {"session": session_id})
        alice_ws.ok("delete")
    tab.goto(server.http + "/")  # the same browser: signed in by its refresh cookie
    expect(tab.locator("#notices")).to_contain_text("1 change kept on this device for a session you can no longer open")
    assert not [key for key in local_storage(tab) if key.startswith("sessions.outbox")]
    expect(tab.locator("#sessions-empty")).to_be_visible()


def test_a_session_deleted_while_on_the_list_goes_from_it(server, new_page):
    with live_client(server, "alice") as alice_ws:
        snapshot = alice_ws.ok("create", {"title": "Short-lived", "data": {"items": []}})
        alice_ws.ok("invite", {"username": "bob", "role": "viewer"})
    bob = new_page()
    sign_in(bob, server, "bob")
    expect(row(bob, "Short-lived")).to_be_visible()
    make_staff(server, "erin")
    admin = Admin(server.http, "erin", live.PASSWORD)
    status, _ = admin.post(
        "/admin/sessions_app/session/",
        {"action": "delete_selected", "_selected_action": [snapshot["id"]], "index": "0", "post": "yes"},
    )
    assert status == 200
    expect(row(bob, "Short-lived")).to_have_count(0)
    expect(bob.locator("#notices")).to_contain_text("“Short-lived” was deleted.")


def test_the_invite_picker_suggests_only_people_the_owner_shares_a_session_with(server, new_page):
    with live_client(server, "bob") as bob_ws:
        bob_ws.ok("create", {"title": "Bob and alice", "data": {}})
        bob_ws.ok("invite", {"username": "alice", "role": "viewer"})
    alice = new_page(DESKTOP)
    sign_in(alice, server, "alice")
    create_session(alice, "Picker")
    options = alice.locator("#invite-contacts option")
    alice.get_by_label("Invite by username").focus()
    expect(options).to_have_count(1)  # bob shares "Bob and alice"; carol, dave, erin share nothing
    expect(options.first).to_have_attribute("value", "bob")
    alice.get_by_label("Invite by username").fill("c")
    expect(options).to_have_count(0)
    invite(alice, "carol", "viewer")  # any username can still be typed
    alice.get_by_label("Invite by username").fill("")
    alice.get_by_label("Invite by username").blur()
    alice.get_by_label("Invite by username").focus()
    expect(options).to_have_count(1)  # carol is a member here now: not suggested
    expect(options.first).to_have_attribute("value", "bob")


def test_the_owner_deletes_the_session_from_its_page_and_the_members_page_leaves(server, new_page):
    alice = new_page(DESKTOP)
    sign_in(alice, server, "alice")
    create_session(alice, "Old plans")
    invite(alice, "bob", "viewer")
    expect(alice.get_by_role("button", name="Delete session")).to_be_visible()
    bob = new_page()
    sign_in(bob, server, "bob")
    row(bob, "Old plans").get_by_role("link").click()
    expect(bob.locator("#role-badge")).to_have_text("Viewer (read-only)")
    expect(bob.get_by_role("button", name="Delete session")).to_be_hidden()  # owner only
    shot(alice, "membership-delete-button")

    alice.once("dialog", lambda dialog: dialog.dismiss())  # "Cancel": nothing happens
    alice.get_by_role("button", name="Delete session").click()
    expect(alice.locator("#connection")).to_have_attribute("data-status", "connected")
    expect(bob.locator("#role-badge")).to_be_visible()

    alice.once("dialog", lambda dialog: dialog.accept())
    alice.get_by_role("button", name="Delete session").click()
    expect(alice).to_have_url(server.http + "/")
    expect(alice.locator("#notices")).to_contain_text("You deleted “Old plans”.")
    expect(row(alice, "Old plans")).to_have_count(0)
    expect(bob).to_have_url(server.http + "/")
    expect(bob.locator("#notices")).to_contain_text("“Old plans” was deleted by alice.")
    expect(row(bob, "Old plans")).to_have_count(0)
    shot(bob, "membership-deleted-by-owner")


def test_any_member_can_leave(server, new_page):
    with live_client(server, "alice") as alice_ws:
        snapshot = alice_ws.ok("create", {"title": "Book club", "data": {"items": []}})
        alice_ws.ok("invite", {"username": "dave", "role": "viewer"})
        alice_ws.ok("join", {"session": snapshot["id"]})
        dave = new_page()
        sign_in(dave, server, "dave")
        row(dave, "Book club").get_by_role("link").click()
        expect(dave.locator("#role-badge")).to_have_text("Viewer (read-only)")
        dave.get_by_role("button", name="Leave session").click()
        expect(dave).to_have_url(server.http + "/")
        expect(dave.locator("#notices")).to_contain_text("You left “Book club”.")
        # Still a member: the session stays on the list.
        expect(row(dave, "Book club")).to_contain_text("Viewer")
        assert [m["username"] for m in alice_ws.ok("presence")["present"]] == ["alice"]


def revoke_own_sign_in(server: live.Daphne, page: Page) -> None:
    """Sign out this page's login elsewhere (a script holding the same refresh token): revoke it
    through the JSON API; the browser keeps the (now blacklisted) cookie."""
    refresh = refresh_cookie(page)["value"]
    status, _ = live.http_json(server.http + "/api/v1/token/revoke/", {"refresh": refresh})
    assert status == 200


def disconnect_everywhere(server: live.Daphne, page: Page) -> None:
    make_staff(server, "erin")
    admin = Admin(server.http, "erin", live.PASSWORD)
    result = admin.action("/admin/auth/user/", "disconnect_everywhere", [user_id(server, "bob")])
    assert "Disconnected 1 user(s) everywhere" in result


def change_password(server: live.Daphne, page: Page) -> None:
    make_staff(server, "erin")
    admin = Admin(server.http, "erin", live.PASSWORD)
    password = "a-New-Password-31"
    status, result = admin.post(
        f"/admin/auth/user/{user_id(server, 'bob')}/password/",
        {"password1": password, "password2": password, "usable_password": "true"},
    )
    assert status == 200 and "Password changed successfully" in result, result[:2000]


class _FormFields(HTMLParser):
    """The values a browser would submit from the admin's change form (inputs, checked boxes,
    selected options; one level of <select>)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self.select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and name != "csrfmiddlewaretoken":
            kind = a.get("type", "text")
            if kind in ("submit", "button", "file"):
                return
            if kind == "checkbox" and "checked" not in a:
                return
            self.fields.append((name, a.get("value") or ("on" if kind == "checkbox" else "")))
        elif tag == "select":
            self.select = name
        elif tag == "option" and self.select and "selected" in a:
            self.fields.append((self.select, a.get("value") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.select = None


def deactivate(server: live.Daphne, page: Page) -> None:
    """Untick "Active" on bob's change form in the admin and save, as an operator does."""
    make_staff(server, "erin")
    admin = Admin(server.http, "erin", live.PASSWORD)
    path = f"/admin/auth/user/{user_id(server, 'bob')}/change/"
    with admin.opener.open(server.http + path, timeout=10) as response:
        parser = _FormFields()
        parser.feed(response.read().decode())
    fields: dict[str, list[str]] = {}
    for name, value in parser.fields:
        if name != "is_active":
            fields.setdefault(name, []).append(value)
    status, result = admin.post(path, fields)
    assert status == 200 and "was changed successfully" in result, result[:3000]


@pytest.mark.parametrize(
    ("reason", "end", "message"),
    [
        ("logged_out", revoke_own_sign_in, "You signed out on another page or device"),
        ("disconnected", disconnect_everywhere, "An administrator ended your connection and sign-in"),
        ("password_changed", change_password, "Your password was changed"),
        ("deactivated", deactivate, "Your account has been deactivated"),
    ],
)
def test_a_socket_the_server_ends_signs_the_page_out_with_the_reason(server, new_page, reason, end, message):
    with live_client(server, "alice") as alice_ws:
        items = [{"id": "a", "text": "One", "done": False}]
        snapshot = alice_ws.ok("create", {"title": "Watched", "data": {"items": items}})
        alice_ws.ok("invite", {"username": "bob", "role": "editor"})
    bob = new_page()
    sign_in(bob, server, "bob")
    row(bob, "Watched").get_by_role("link").click()
    expect(bob.locator("#role-badge")).to_have_text("Editor")
    expect(bob.get_by_label("New item")).to_be_visible()
    end(server, bob)

    expect(bob.locator("#notices")).to_contain_text(message)
    expect(bob.locator("#notices")).not_to_contain_text("expired")
    expect(bob.get_by_role("link", name="Sign in")).to_be_visible()
    expect(bob.locator("#sign-out")).to_be_hidden()
    expect(bob.locator("#connection")).to_have_attribute("data-status", "closed")
    # No edit control is left.
    expect(bob.get_by_label("New item")).to_be_hidden()
    expect(bob.get_by_role("button", name="Save and close")).to_be_hidden()
    expect(bob.get_by_role("button", name="Leave session")).to_be_hidden()
    if reason == "logged_out":
        # A sign-out takes the session off the screen (docs/client.md, "Tokens").
        expect(bob.locator("#checklist")).to_be_hidden()
        expect(bob.locator("#items .item-text")).to_have_count(0)
        expect(bob.locator("#people")).to_be_hidden()
    else:
        expect(bob.locator("#items .item-text").first).not_to_be_editable()
    expect(bob.locator("#read-only-note")).to_contain_text("You are signed out")
    shot(bob, f"membership-ended-{reason}")
    assert snapshot["id"] in bob.url
