"""Each page, as each kind of user sees it, checked by axe-core against WCAG 2.1 A and AA."""

from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DESKTOP, PHONE
from tests.e2e.ui import add_item, create_session, open_session, sign_in
from tests.wsclient import BlockingClient

pytestmark = pytest.mark.e2e

WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, summarised for a readable failure."""
    found = Axe().run(page, options=WCAG).response["violations"]
    return [
        {"rule": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["html"][:120] for n in v["nodes"][:3]]}
        for v in found
    ]


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
def test_every_page_passes_axe(server, new_page, color_scheme):
    with BlockingClient(server.ws, server.token("bob")) as bob:
        shared = bob.ok("create", {"title": "Bob's list", "data": {"items": []}})["id"]
        bob.ok("invite", {"username": "alice", "role": "viewer"})

    page = new_page(PHONE)
    page.emulate_media(color_scheme=color_scheme)
    page.goto(server.http + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert violations(page) == [], "sign-in page"

    sign_in(page, server, "alice")
    create_session(page, "Accessible list")
    add_item(page, "Milk")
    add_item(page, "Eggs")
    page.get_by_label("Done: Milk").check()
    assert violations(page) == [], "session page, owner"

    page.goto(server.http + "/")
    expect(page.locator("#session-list li")).to_have_count(2)
    assert violations(page) == [], "list page"

    viewer = new_page(DESKTOP)
    viewer.emulate_media(color_scheme=color_scheme)
    sign_in(viewer, server, "alice")
    open_session(viewer, server, shared)
    assert violations(viewer) == [], "session page, viewer"
