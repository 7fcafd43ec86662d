"""Issue 14, "Done when": a Chromium signs in by email link (the message read from the live
daphne's file backend), then edits a session; the same link refused in another browser, and
again once used; a mail scanner's GET of the link consumes nothing."""

import contextlib
import re
import sqlite3
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests import live
from tests.e2e.conftest import DESKTOP
from tests.e2e.ui import add_item, create_session, expect_all_sent, expect_items, open_session

pytestmark = pytest.mark.e2e

LINK = re.compile(r"(http://127\.0\.0\.1:\d+/#link=[0-9a-f-]+&sesame=[A-Za-z0-9_-]+)")


def give_email(database_url: str, username: str, email: str) -> None:
    path = database_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn, conn:
        conn.execute("UPDATE auth_user SET email = ? WHERE username = ?", (email, username))


def ask_for_link(page: Page, server: live.Daphne, login: str) -> None:
    page.goto(server.http + "/")
    page.get_by_label("Email or username").fill(login)
    page.get_by_role("button", name="Send the link").click()
    expect(page.locator("#magic-status")).to_contain_text("a sign-in link is on its way")


def mailed_links(folder: Path) -> list[str]:
    """The links of the messages the file backend wrote (one file per connection)."""
    text = "\n".join(path.read_text() for path in sorted(folder.glob("*.log")))
    return LINK.findall(text)


@pytest.fixture
def mail_server(started: live.Processes, tmp_path: Path) -> tuple[live.Daphne, Path]:
    folder = tmp_path / "mail"
    folder.mkdir()
    database = started.sqlite()
    give_email(database, "alice", "alice@example.com")
    server = started.daphne(
        database, EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend", EMAIL_FILE_PATH=str(folder)
    )
    return server, folder


def test_sign_in_by_email_link_in_the_browser_that_asked_then_edit_a_session(mail_server, new_page):
    server, folder = mail_server
    page = new_page(DESKTOP)
    ask_for_link(page, server, "alice@example.com")
    link = live.wait_until(lambda: (mailed_links(folder) or [None])[0], 20, "the sign-in mail")
    # A mail scanner fetches the link first: a GET of the page, which uses nothing up.
    with urllib.request.urlopen(link, timeout=10) as response:  # noqa: S310 - our own live server
        assert response.status == 200

    # Another browser (its own cookies) is refused, with a message that says why.
    other = new_page(DESKTOP)
    other.goto(link)
    expect(other.locator("#magic-landing-error")).to_contain_text("asked for in another browser")
    expect(other.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()

    page.goto(link)
    expect(page.get_by_role("heading", name="My sessions")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    assert "sesame" not in page.url, "the token is taken out of the address bar"
    session_id = create_session(page, "By link")
    add_item(page, "Milk")
    expect_all_sent(page)
    open_session(page, server, session_id)  # a reload: signed in with the refresh cookie
    expect_items(page, ["Milk"])

    # Used: refused, even in the browser that asked.
    page.goto(link)
    expect(page.locator("#magic-landing-error")).to_contain_text("already used")
