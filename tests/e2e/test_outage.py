"""Long outages, lost replies and reloads: no edit is dropped, none is applied twice."""

import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests import live
from tests.e2e.conftest import DESKTOP
from tests.e2e.ui import (
    add_item,
    error_notices,
    expect_all_sent,
    expect_items,
    expect_waiting,
    item_texts,
    offline_ready,
    open_session,
    shot,
    sign_in,
)
from tests.wsclient import BlockingClient

pytestmark = pytest.mark.e2e

OUTAGE = 60  # seconds: twice the 30 s after which the client used to drop a waiting change


def shared_session(server, title: str, data: dict[str, Any]) -> str:
    """A session of alice's, with bob as an editor; returns its id."""
    with BlockingClient(server.ws, server.token("alice")) as alice:
        session_id = alice.ok("create", {"title": title, "data": data})["id"]
        alice.ok("invite", {"username": "bob", "role": "editor"})
    return session_id


def stored(server, session_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The session's document and its change log, from the database."""
    out = live.manage(
        server.env,
        "shell",
        "-c",
        "import json\n"
        "from sessions_app.models import Change, Session\n"
        f"s = Session.objects.get(id={session_id!r})\n"
        "log = [{'version': c.version, 'ops': c.ops, 'by': c.author.username}"
        " for c in Change.objects.filter(session=s).order_by('version')]\n"
        "print(json.dumps({'data': s.data, 'log': log}))\n",
    )
    result = json.loads(out.strip().splitlines()[-1])
    return result["data"], result["log"]


def status(page: Page):
    return expect(page.locator("#connection"))


def test_a_long_outage_with_edits_in_both_windows_and_a_reload_delivers_every_edit_exactly_once(server, new_page):
    session_id = shared_session(server, "Outage drill", {"items": []})
    alice = new_page()
    sign_in(alice, server, "alice")
    open_session(alice, server, session_id)
    bob = new_page(DESKTOP)
    sign_in(bob, server, "bob")
    open_session(bob, server, session_id)
    add_item(alice, "Before the outage")
    expect_items(bob, ["Before the outage"])
    expect_all_sent(alice)
    expect(bob.locator("#presence-list")).to_contain_text("alice")
    for page in (alice, bob):
        offline_ready(page)
    shot(bob, "saved")

    server.stop()
    stopped = time.monotonic()
    for page in (alice, bob):
        status(page).to_have_attribute("data-status", "unreachable")
        expect(page.locator("#connection .label")).to_have_text("Server unreachable, retrying")
        expect(page.get_by_role("button", name="Retry now")).to_be_visible()
    shot(alice, "server-unreachable")

    # Both go on editing. Every edit waits, visibly, and is kept on the device.
    add_item(alice, "Alice 1")
    add_item(alice, "Alice 2")
    alice.get_by_label("Done: Before the outage").check()
    expect_waiting(alice, 3)
    add_item(bob, "Bob 1")
    bob.locator("#items .item-text").first.fill("Before the outage, edited by bob")
    bob.locator("#items .item-text").first.press("Enter")
    expect_waiting(bob, 2)
    # Presence is what was last known, marked as such.
    expect(bob.locator("#presence-list")).to_have_class(re.compile(r"\bstale\b"))
    expect(bob.locator("#presence-list")).to_contain_text("Last seen here")
    shot(alice, "pending")
    shot(bob, "stale-presence")

    # Bob reloads during the outage: the page opens from the service worker's cache and shows
    # the copy of the session and his unsent changes kept on this device.
    bob.reload()
    expect(bob.locator("#session-title")).to_have_text("Outage drill")
    expect_items(bob, ["Before the outage, edited by bob", "Bob 1"])
    expect_waiting(bob, 2)
    status(bob).to_have_attribute("data-status", re.compile("reconnecting|unreachable"))
    shot(bob, "reloaded-during-outage")

    # The outage lasts a full minute (the scenario itself, not a check on timing).
    alice.wait_for_timeout(max(0.0, OUTAGE - (time.monotonic() - stopped)) * 1000)
    expect_waiting(alice, 3)
    expect_waiting(bob, 2)

    server.start()  # same port, same database
    for page in (alice, bob):
        status(page).to_have_attribute("data-status", "connected", timeout=30_000)
        expect_all_sent(page)
    expected = ["Before the outage, edited by bob", "Alice 1", "Alice 2", "Bob 1"]
    for page in (alice, bob):
        expect(page.locator("#items .item-text")).to_have_count(4)
    assert sorted(item_texts(alice)) == sorted(expected)
    assert item_texts(alice) == item_texts(bob)
    expect(alice.get_by_label("Done: Before the outage, edited by bob")).to_be_checked()
    expect(bob.locator("#presence-list")).not_to_have_class(re.compile(r"\bstale\b"))
    expect(bob.locator("#presence-list")).to_contain_text("alice")

    data, log = stored(server, session_id)
    assert sorted(item["text"] for item in data["items"]) == sorted(expected)
    # Exactly once: one change in the log per edit (1 before, 3 by alice and 2 by bob during).
    authors = [change["by"] for change in log]
    assert len(log) == 6, log
    assert authors.count("alice") == 4 and authors.count("bob") == 2
    assert error_notices(alice) == [] and error_notices(bob) == []
    for page in (alice, bob):
        assert page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('sessions.outbox'))") == []


def test_a_patch_whose_reply_is_lost_is_recognised_and_not_applied_twice(server, new_page):
    """The server applies the patch, the reply never reaches the page, the socket drops: after the
    reconnect the page finds its change at base + 1 in the change log and does not send it again.
    The document is a list of strings, where a second "eggs" would show."""
    with BlockingClient(server.ws, server.token("alice")) as alice:
        session_id = alice.ok("create", {"title": "Lost reply", "data": {"items": ["milk"]}})["id"]
    page = new_page()
    sent: list[dict[str, Any]] = []
    lose = {"armed": False, "id": None}

    def route(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            sent.append(frame)
            if lose["armed"] and frame.get("state") == "patch":
                lose["id"] = frame["id"]
            upstream.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if lose["id"] is not None and frame.get("id") == lose["id"]:
                lose.update(armed=False, id=None)
                ws.close(code=4503, reason="test: the reply is lost")  # as a server going away would
                upstream.close()
                return
            ws.send(message)

        ws.on_message(from_page)
        upstream.on_message(from_server)

    page.route_web_socket(re.compile(r"/api/v1/socket$"), route)
    sign_in(page, server, "alice")
    open_session(page, server, session_id)
    expect_items(page, ["milk"])
    lose["armed"] = True
    add_item(page, "eggs")
    expect_all_sent(page)
    status(page).to_have_attribute("data-status", "connected")
    expect_items(page, ["milk", "eggs"])

    assert lose["armed"] is False, "the reply was intercepted and the socket dropped"
    patches = [frame for frame in sent if frame.get("state") == "patch"]
    assert len(patches) == 1, patches
    assert {"session": session_id, "since": 0} in [frame["data"] for frame in sent if frame.get("state") == "join"]
    data, log = stored(server, session_id)
    assert data == {"items": ["milk", "eggs"]}
    assert len(log) == 1
    assert error_notices(page) == []


def test_offline_and_unreachable_are_told_apart_and_retry_now_reconnects_at_once(server, new_page):
    session_id = shared_session(server, "Retry drill", {"items": []})
    page = new_page()
    page.clock.install()  # timers run as usual until paused below
    sign_in(page, server, "alice")
    open_session(page, server, session_id)
    server.stop()
    status(page).to_have_attribute("data-status", "unreachable")
    expect(page.locator("#connection .countdown")).to_contain_text(re.compile(r"next try in \d+ s"))

    page.context.set_offline(True)  # the browser's network goes too
    status(page).to_have_attribute("data-status", "offline")
    expect(page.locator("#connection .label")).to_have_text("Offline: no network")
    add_item(page, "Written offline")
    expect(page.locator("#sync-state")).to_contain_text("sent when you are back online")
    shot(page, "offline")
    page.context.set_offline(False)
    status(page).to_have_attribute("data-status", re.compile("connecting|reconnecting|unreachable"))
    expect(page.locator("#sync-state")).to_contain_text("sent when the server is back")

    # Stop the page's clock: no scheduled attempt can fire by itself any more. Only the button
    # can bring the page back now.
    page.clock.pause_at(int(time.time() * 1000) + 1000)
    status(page).to_have_attribute("data-status", "unreachable")
    server.start()
    page.get_by_role("button", name="Retry now").click()
    status(page).to_have_attribute("data-status", "connected")
    expect_all_sent(page)
    expect(page.get_by_role("button", name="Retry now")).to_be_hidden()
    page.clock.resume()
    data, _ = stored(server, session_id)
    assert [item["text"] for item in data["items"]] == ["Written offline"]
