"""Two windows tick different items of one checklist at the same moment: both ticks land at once,
rebased on each other by the server (docs/protocol.md, section 7, "Rebase"), with no error, no
conflict and no retry on either page."""

import json
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DESKTOP
from tests.e2e.ui import error_notices, expect_all_sent, open_session, shot, sign_in
from tests.wsclient import BlockingClient

pytestmark = pytest.mark.e2e

ITEMS = [f"Item {n}" for n in range(1, 11)]
ROUNDS = 5


def observe(page: Page, frames: dict[str, list[dict]]) -> None:
    """Record the page's patch requests and the replies and errors its socket receives."""

    def on_socket(ws) -> None:
        ws.on("framesent", lambda text: frames["sent"].append(json.loads(text)))
        ws.on("framereceived", lambda text: frames["received"].append(json.loads(text)))

    page.on("websocket", on_socket)


def test_two_windows_ticking_different_items_at_the_same_moment_never_retry(server, new_page):
    with BlockingClient(server.ws, server.token("alice")) as alice_api:
        items = [{"id": f"i{n}", "text": text, "done": False} for n, text in enumerate(ITEMS)]
        session_id = alice_api.ok("create", {"title": "Packing", "data": {"items": items}})["id"]
        alice_api.ok("invite", {"username": "bob", "role": "editor"})

    pages, frames = [], []
    for username, viewport in (("alice", None), ("bob", DESKTOP)):
        page = new_page(viewport) if viewport else new_page()
        seen: dict[str, list[dict]] = {"sent": [], "received": []}
        observe(page, seen)
        sign_in(page, server, username)
        open_session(page, server, session_id)
        pages.append(page)
        frames.append(seen)
    alice, bob = pages

    for round_ in range(ROUNDS):
        # Alice ticks item 2r+1, bob item 2r+2, both at one instant (timers aimed at the same ms).
        start_at = int(time.time() * 1000) + 700
        for page, text in ((alice, ITEMS[2 * round_]), (bob, ITEMS[2 * round_ + 1])):
            page.evaluate(
                """([label, startAt]) => setTimeout(
                    () => document.querySelector(`[aria-label="Done: ${label}"]`).click(), startAt - Date.now())""",
                [text, start_at],
            )
        for page in pages:
            for text in ITEMS[: 2 * round_ + 2]:
                expect(page.get_by_label(f"Done: {text}", exact=True)).to_be_checked()
            expect_all_sent(page)
    shot(alice, "rebase-two-windows-alice")
    shot(bob, "rebase-two-windows-bob")

    for seen in frames:
        patches = [f for f in seen["sent"] if f.get("state") == "patch"]
        assert len(patches) == ROUNDS, "one patch per tick: none was sent again"
        assert not [f for f in seen["received"] if f.get("state") == "error"], "no conflict, no error"
    replies = [f for seen in frames for f in seen["received"] if f.get("state") == "patch"]
    assert any(reply["data"].get("rebased") for reply in replies), "the ticks were meant to meet on one version"
    for page in pages:
        assert error_notices(page) == []
        expect(page.locator("#notices .notice-error")).to_have_count(0)
    with BlockingClient(server.ws, server.token("bob")) as check:
        data = check.ok("join", {"session": session_id})["data"]
    assert [item["done"] for item in data["items"]] == [True] * (2 * ROUNDS)
