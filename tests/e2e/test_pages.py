"""Signing in and out, and saving a session, as a person does it."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests import live
from tests.e2e.ui import (
    add_item,
    create_session,
    expect_items,
    expect_no_token_in_scripts_reach,
    refresh_cookie,
    sign_in,
)
from tests.live import PASSWORD
from tests.wsclient import BlockingClient

pytestmark = pytest.mark.e2e


def test_save_records_a_revision_and_returns_to_the_list(server, new_page):
    page = new_page()
    sign_in(page, server, "alice")
    session_id = create_session(page, "Trip")
    add_item(page, "Passport")
    add_item(page, "Tickets")
    page.get_by_label("Done: Passport").check()

    page.get_by_label("Note for this revision").fill("Packed")
    page.get_by_role("button", name="Save and close").click()

    expect(page).to_have_url(server.http + "/")
    expect(page.locator("#notices")).to_contain_text("Saved “Trip” as revision 1")
    expect(page.locator("#session-list")).to_contain_text("Trip")
    expect(page.locator(f'#session-list [data-session-id="{session_id}"]')).to_contain_text("version 3")

    out = live.manage(
        server.env,
        "shell",
        "-c",
        "import json\n"
        "from sessions_app.models import Revision\n"
        "print(json.dumps([{'session': str(r.session_id), 'number': r.number, 'version': r.version,"
        " 'message': r.message, 'data': r.data} for r in Revision.objects.all()]))\n",
    )
    revisions = json.loads(out.strip().splitlines()[-1])
    assert len(revisions) == 1
    revision = revisions[0]
    assert revision["session"] == session_id
    assert (revision["number"], revision["version"], revision["message"]) == (1, 3, "Packed")
    assert [(i["text"], i["done"]) for i in revision["data"]["items"]] == [("Passport", True), ("Tickets", False)]


def test_sign_in_errors_are_readable_and_sign_out_revokes_the_refresh_token(server, new_page):
    page = new_page()
    page.goto(server.http + "/")
    page.get_by_label("Username", exact=True).fill("alice")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    assert "password" not in page.url and "not-the-password" not in page.url

    sign_in(page, server, "alice")
    cookie = refresh_cookie(page)
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] not in page.url
    expect_no_token_in_scripts_reach(page)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#notices")).to_contain_text("You are signed out.")
    assert refresh_cookie(page) is None, "the server deleted the cookie"
    # The refresh token is blacklisted on the server, not only forgotten here.
    status, _body = live.http_json(server.http + "/api/v1/token/refresh/", {"refresh": cookie["value"]})
    assert status == 401


def test_a_session_link_opened_signed_out_comes_back_after_sign_in(server, new_page):
    page = new_page()
    sign_in(page, server, "bob")
    session_id = create_session(page, "Shared link")
    add_item(page, "First")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    page.goto(f"{server.http}/sessions/{session_id}/")
    expect(page).to_have_url(re.compile(r"/\?next="))
    page.get_by_label("Username", exact=True).fill("bob")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.http}/sessions/{session_id}/")
    expect_items(page, ["First"])


def test_a_session_that_is_not_yours_says_so(server, new_page):
    with BlockingClient(server.ws, server.token("alice")) as alice:
        private = alice.ok("create", {"title": "Private", "data": {}})["id"]
    page = new_page()
    sign_in(page, server, "carol")
    page.goto(f"{server.http}/sessions/{private}/")
    expect(page.get_by_role("alert")).to_contain_text(
        "This session could not be opened: That session does not exist, or you have no access to it."
    )
    expect(page.locator("#session-title")).to_have_text("Session unavailable")
    expect(page.get_by_label("New item")).to_be_hidden()
    expect(page.get_by_role("link", name="Back to my sessions")).to_have_attribute("href", "/")
