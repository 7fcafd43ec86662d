"""What a person does on the pages, as Playwright steps shared by the browser tests."""

import json
import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.live import PASSWORD, Server

SESSION_URL = re.compile(r"/sessions/([0-9a-f-]{36})/$")


def sign_in(page: Page, server: Server, username: str, password: str = PASSWORD) -> None:
    """Sign in through the form on / and wait for the connected list of sessions."""
    page.goto(server.http + "/")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="My sessions")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")


def open_session(page: Page, server: Server, session_id: str) -> None:
    """Go to a session page and wait until it is joined and connected."""
    page.goto(f"{server.http}/sessions/{session_id}/")
    expect(page.locator("#role-badge")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")


def item_texts(page: Page) -> list[str]:
    return page.locator("#items .item-text").evaluate_all("(inputs) => inputs.map((i) => i.value)")


def create_session(page: Page, title: str) -> str:
    """Create a session from the list page; return its id once its page is open."""
    page.get_by_label("Title").fill(title)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(SESSION_URL)
    expect(page.locator("#session-title")).to_have_text(title)
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    return SESSION_URL.search(page.url).group(1)


def add_item(page: Page, text: str) -> None:
    page.get_by_label("New item").fill(text)
    page.get_by_label("New item").press("Enter")
    expect(page.locator("#items .item-text").last).to_have_value(text)


def expect_items(page: Page, texts: list[str]) -> None:
    """The checklist shows exactly ``texts``, in order."""
    rows = page.locator("#items .item-text")
    expect(rows).to_have_count(len(texts))
    for index, text in enumerate(texts):
        expect(rows.nth(index)).to_have_value(text)


def expect_all_sent(page: Page) -> None:
    expect(page.locator("#sync-state")).to_have_text("All changes saved")


def session_storage(page: Page) -> dict[str, str]:
    return json.loads(page.evaluate("JSON.stringify(Object.assign({}, sessionStorage))"))


def local_storage(page: Page) -> dict[str, str]:
    return json.loads(page.evaluate("JSON.stringify(Object.assign({}, localStorage))"))


REFRESH_COOKIE = "sessions_refresh"  # sessions_app/cookies.py (plain HTTP: no __Secure- prefix)
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


def refresh_cookie(page: Page) -> dict | None:
    """The refresh cookie as the browser holds it (Playwright sees HttpOnly cookies; scripts do not)."""
    return next((c for c in page.context.cookies() if c["name"] == REFRESH_COOKIE), None)


def expect_no_token_in_scripts_reach(page: Page) -> None:
    """Neither ``document.cookie`` nor sessionStorage nor localStorage holds a token."""
    cookie = refresh_cookie(page)
    seen = page.evaluate("document.cookie")
    assert REFRESH_COOKIE not in seen and (cookie is None or cookie["value"] not in seen), seen
    for stored in (session_storage(page), local_storage(page)):
        for key, value in stored.items():
            assert not JWT.search(value), f"a token in web storage: {key}"
            assert cookie is None or cookie["value"] not in value, key


def record_statuses(page: Page) -> None:
    """From now on, keep every value the connection indicator takes in window.__statuses."""
    page.evaluate(
        """() => {
            const node = document.querySelector("#connection");
            window.__statuses = [node.dataset.status];
            new MutationObserver(() => window.__statuses.push(node.dataset.status))
                .observe(node, { attributes: true, attributeFilter: ["data-status"] });
        }"""
    )


def statuses(page: Page) -> list[str]:
    return page.evaluate("window.__statuses")


def error_notices(page: Page) -> list[str]:
    """The error notices on the page (information and success notices are not counted)."""
    return page.locator("#notices .notice-error p").all_inner_texts()


SHOTS = Path(os.environ.get("E2E_SHOTS", Path(__file__).parent / "artifacts" / "states"))


def shot(page: Page, name: str) -> None:
    """A screenshot of a page state, for people to look at: ``$E2E_SHOTS/<name>.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def expect_waiting(page: Page, count: int) -> None:
    """The sync label says ``count`` changes wait, kept on this device."""
    word = "change" if count == 1 else "changes"
    expect(page.locator("#sync-state")).to_contain_text(f"{count} {word} not sent yet: kept on this device")


def offline_ready(page: Page) -> None:
    """Wait until the service worker controls the page and has this page in its cache, so that a
    reload while the server is down still opens it."""
    page.wait_for_function(
        """async () => Boolean(navigator.serviceWorker.controller)
            && Boolean(await caches.match(location.pathname))""",
        timeout=15_000,
    )
