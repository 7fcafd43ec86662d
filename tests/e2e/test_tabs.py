"""Issue 12, item 6: sign-in across tabs without exposing the refresh token to scripts (it lives in
an HttpOnly cookie, the access token in each tab's memory), and sign-out ending every tab. Two tabs
are two pages of one browser context: the same cookies and localStorage."""

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests import live
from tests.e2e.conftest import DESKTOP
from tests.e2e.ui import (
    REFRESH_COOKIE,
    add_item,
    create_session,
    error_notices,
    expect_all_sent,
    expect_items,
    expect_no_token_in_scripts_reach,
    open_session,
    refresh_cookie,
    shot,
    sign_in,
)

pytestmark = pytest.mark.e2e

REFRESH_PATH = "/api/v1/token/cookie/refresh/"


def refresh_statuses(page: Page) -> list[int]:
    """The status of every cookie refresh the page makes, from now on."""
    statuses: list[int] = []

    def seen(response: Any) -> None:
        if response.url.endswith(REFRESH_PATH):
            statuses.append(response.status)

    page.on("response", seen)
    return statuses


def test_a_new_tab_is_signed_in_without_asking_and_signing_out_in_one_tab_ends_every_tab(server, new_page):
    tab1 = new_page(DESKTOP)
    sign_in(tab1, server, "alice")
    session_id = create_session(tab1, "Two tabs")
    add_item(tab1, "Milk")
    expect_all_sent(tab1)

    # The refresh token is the browser's: HttpOnly, SameSite=Strict, sent to the cookie endpoints only.
    cookie = refresh_cookie(tab1)
    assert cookie is not None, tab1.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/api/v1/token/cookie/"
    assert cookie["secure"] is False, "plain http://127.0.0.1: no Secure (HTTPS: Secure, __Secure- name)"
    assert 86400 - 600 < cookie["expires"] - time.time() <= 86400, "Max-Age: the refresh token's life (a day)"
    expect_no_token_in_scripts_reach(tab1)
    assert REFRESH_COOKIE not in tab1.evaluate("document.cookie")

    # A new tab on the same site: signed in at once, with no sign-in form.
    tab2 = new_page(tab_of=tab1)
    refreshes = refresh_statuses(tab2)
    tab2.goto(server.http + "/")
    expect(tab2.get_by_role("heading", name="My sessions")).to_be_visible()
    expect(tab2.locator("#connection")).to_have_attribute("data-status", "connected")
    expect(tab2.locator("#sign-in")).to_be_hidden()
    expect(tab2.locator("#whoami")).to_have_text("Signed in as alice")
    expect(tab2.locator("#session-list")).to_contain_text("Two tabs")
    assert refreshes == [200], "one cookie refresh gave the new tab its access token"
    assert refresh_cookie(tab2)["value"] != cookie["value"], "and rotated the cookie"
    shot(tab2, "cookie-new-tab-signed-in")

    open_session(tab2, server, session_id)
    expect_items(tab2, ["Milk"])
    add_item(tab2, "Bread")
    expect_items(tab1, ["Milk", "Bread"])  # both tabs live on the same session
    expect_no_token_in_scripts_reach(tab2)
    shot(tab2, "cookie-new-tab-session")
    last = refresh_cookie(tab2)["value"]

    # Sign out in tab 2: tab 2 and tab 1 are signed out, the cookie is gone and revoked.
    tab2.get_by_role("button", name="Sign out").click()
    expect(tab2.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(tab2.locator("#notices")).to_contain_text("You are signed out.")

    expect(tab1.locator("#notices")).to_contain_text(
        re.compile(r"You signed out (in another tab|on another page or device)"), timeout=5_000
    )
    expect(tab1.locator("#connection")).to_have_attribute("data-status", "closed")
    expect(tab1.get_by_role("link", name="Sign in")).to_be_visible()
    expect(tab1.locator("#sign-out")).to_be_hidden()
    expect(tab1.locator("#whoami")).to_be_hidden()
    # No document and no edit control left in tab 1.
    expect(tab1.locator("#checklist")).to_be_hidden()
    expect(tab1.locator("#items .item-text")).to_have_count(0)
    expect(tab1.locator("#people")).to_be_hidden()
    expect(tab1.get_by_label("New item")).to_be_hidden()
    expect(tab1.get_by_role("button", name="Save and close")).to_be_hidden()
    expect(tab1.get_by_role("button", name="Leave session")).to_be_hidden()
    expect(tab1.locator("#session-title")).to_have_text("Signed out")
    assert "Milk" not in tab1.locator("main").inner_text()
    expect(tab1.locator("#notices")).not_to_contain_text("expired")
    shot(tab1, "cookie-other-tab-signed-out")
    shot(tab2, "cookie-signed-out-here")

    assert refresh_cookie(tab1) is None, "the server deleted the cookie"
    status, _ = live.http_json(server.http + "/api/v1/token/refresh/", {"refresh": last})
    assert status == 401, "and blacklisted its token"
    expect_no_token_in_scripts_reach(tab1)

    # Reloading tab 1 asks to sign in; nothing is sent with a cookie that is gone.
    tab1.reload()
    expect(tab1).to_have_url(re.compile(r"/\?next="))
    expect(tab1.get_by_role("heading", name="Sign in")).to_be_visible()
    assert error_notices(tab2) == []


def test_tabs_renewing_at_the_same_moment_all_stay_signed_in(start_server, new_page):
    """Every tab shares the cookie, and rotation blacklists the one sent: concurrent refreshes must
    not refuse one another (Web Locks serialise them; a tab waiting takes the other's token)."""
    server = start_server(JWT_ACCESS_LIFETIME=6, SESSIONS_TOKEN_EXPIRY_WARNING=3)
    tab1 = new_page()
    sign_in(tab1, server, "alice")
    session_id = create_session(tab1, "Renewals")
    tab2 = new_page(tab_of=tab1)
    tab3 = new_page(tab_of=tab1)
    statuses = {tab: refresh_statuses(tab) for tab in (tab1, tab2, tab3)}
    for tab in (tab2, tab3):
        open_session(tab, server, session_id)

    # Three reloads at once, three times: each page asks for a token as it loads.
    for _ in range(3):
        for tab in (tab1, tab2, tab3):
            tab.evaluate("() => { location.reload(); }")
        for tab in (tab1, tab2, tab3):
            expect(tab.locator("#role-badge")).to_be_visible()
            expect(tab.locator("#connection")).to_have_attribute("data-status", "connected")

    # Then two lifetimes of the access token, renewed in every tab (token_expiring) meanwhile.
    tab1.wait_for_timeout(14_000)  # real time must pass for tokens to expire
    add_item(tab1, "From tab 1")
    add_item(tab3, "From tab 3")
    for tab in (tab1, tab2, tab3):
        expect_items(tab, ["From tab 1", "From tab 3"])
        expect(tab.locator("#connection")).to_have_attribute("data-status", "connected")
        assert error_notices(tab) == []
    every = [status for tab in statuses.values() for status in tab]
    assert every and all(status == 200 for status in every), f"a refresh was refused: {statuses}"
    assert sum(len(tab) for tab in statuses.values()) >= 3, "the tabs did renew"
    shot(tab3, "cookie-three-tabs-after-renewals")
