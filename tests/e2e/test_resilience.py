"""The page survives what networks and servers do: a restart, a missed push, an expiring token."""

import base64
import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.ui import (
    add_item,
    create_session,
    error_notices,
    expect_all_sent,
    expect_items,
    open_session,
    record_statuses,
    refresh_cookie,
    sign_in,
    statuses,
)
from tests.wsclient import BlockingClient

pytestmark = pytest.mark.e2e


def item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "text": text, "done": False}


def add_op(item_id: str, text: str) -> list[dict[str, Any]]:
    return [{"op": "add", "path": "/items/-", "value": item(item_id, text)}]


def patch_current(client: BlockingClient, session_id: str, ops: list[dict[str, Any]]) -> int:
    """Patch on the session's current version (read with a plain join); returns the new version."""
    version = client.ok("join", {"session": session_id})["version"]
    return client.ok("patch", {"version": version, "ops": ops})["version"]


def token_claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (what the page would read)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def record_frames(page: Page) -> list[dict[str, Any]]:
    """Every JSON frame the page sends on any of its sockets, from now on."""
    sent: list[dict[str, Any]] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(json.loads(payload))))
    return sent


def shared_session(server, title: str) -> str:
    """A session of alice's, with bob as an editor; returns its id."""
    with BlockingClient(server.ws, server.token("alice")) as alice:
        session_id = alice.ok("create", {"title": title, "data": {"items": []}})["id"]
        alice.ok("invite", {"username": "bob", "role": "editor"})
    return session_id


def test_the_page_reconnects_after_a_server_restart_and_catches_up(started, server, new_page):
    session_id = shared_session(server, "Restart drill")
    page = new_page()
    sign_in(page, server, "alice")
    open_session(page, server, session_id)
    add_item(page, "Before the restart")
    expect_all_sent(page)
    frames = record_frames(page)
    record_statuses(page)

    server.stop()  # SIGTERM, as a deploy does
    expect(page.locator("#connection")).to_have_attribute("data-status", re.compile("reconnecting|unreachable"))

    # The user goes on editing while disconnected: the change waits, visibly.
    add_item(page, "Added while disconnected")
    expect(page.locator("#sync-state")).to_contain_text("1 change not sent yet: kept on this device")

    # Meanwhile bob edits through another server process on the same database.
    other = started.another(server)
    with BlockingClient(other.ws, other.token("bob")) as bob:
        patch_current(bob, session_id, add_op("b1", "Added by bob during the outage"))

    server.start()  # same port, same database
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected", timeout=60_000)
    expect_items(page, ["Before the restart", "Added by bob during the outage", "Added while disconnected"])
    expect_all_sent(page)

    # It caught up by re-joining with `since` = the version it had, not by reloading.
    rejoins = [f for f in frames if f.get("state") == "join" and "since" in f.get("data", {})]
    assert rejoins and rejoins[0]["data"] == {"session": session_id, "since": 1}
    assert "connected" in statuses(page)[1:]
    assert error_notices(page) == [], "a restart is not the user's problem"
    with BlockingClient(server.ws, server.token("bob")) as bob:
        data = bob.ok("join", {"session": session_id})["data"]
    assert [i["text"] for i in data["items"]] == [
        "Before the restart",
        "Added by bob during the outage",
        "Added while disconnected",
    ]


def test_a_missed_push_is_detected_by_its_version_and_caught_up(started, server, new_page):
    """A push whose version skips one makes the page re-join with `since` and apply the gap."""
    session_id = shared_session(server, "Gap drill")
    page = new_page()
    frames = record_frames(page)
    sign_in(page, server, "alice")
    open_session(page, server, session_id)

    # Version 1 is made on another process: with the in-memory layer its push never reaches the
    # page's process, so the page misses it.
    other = started.another(server)
    with BlockingClient(other.ws, other.token("bob")) as bob:
        patch_current(bob, session_id, add_op("m1", "Missed push"))
    with BlockingClient(server.ws, server.token("bob")) as bob:
        patch_current(bob, session_id, add_op("s2", "Seen push"))  # version 2, pushed to the page

    expect_items(page, ["Missed push", "Seen push"])
    joins = [f["data"] for f in frames if f.get("state") == "join"]
    assert joins == [{"session": session_id}, {"session": session_id, "since": 0}]
    assert error_notices(page) == []


def test_an_expiring_access_token_is_renewed_without_the_user_noticing(start_server, new_page):
    server = start_server(JWT_ACCESS_LIFETIME=6, SESSIONS_TOKEN_EXPIRY_WARNING=3)
    page = new_page()
    frames = record_frames(page)
    sign_in(page, server, "alice")
    session_id = create_session(page, "Long meeting")
    record_statuses(page)
    first_cookie = refresh_cookie(page)["value"]
    first_token = [f["token"] for f in frames if "token" in f][-1]

    # Work on through two lifetimes of the access token: the server warns (token_expiring),
    # the page refreshes and sends `authenticate` on the same socket.
    deadline = time.monotonic() + 30
    renewals = 0
    while renewals < 2:
        assert time.monotonic() < deadline, f"no token renewal seen; frames sent: {frames}"
        page.wait_for_timeout(500)  # real time must pass for a token to expire
        renewals = sum(1 for f in frames if f.get("state") == "authenticate")
    add_item(page, "Still editing after two token lifetimes")
    expect_all_sent(page)
    assert statuses(page) == ["connected"], "the socket never dropped"
    renewed = [f["data"]["token"] for f in frames if f.get("state") == "authenticate"]
    assert len(set(renewed)) == len(renewed) and first_token not in renewed, "new access tokens each time"
    assert refresh_cookie(page)["value"] != first_cookie, "the rotated refresh cookie is kept"

    # Back after a break longer than a lifetime: the page (no access token: memory only) takes a
    # new one with the cookie before connecting instead of being refused.
    page.goto("about:blank")
    page.wait_for_timeout(7_000)  # longer than JWT_ACCESS_LIFETIME
    del frames[:]
    open_session(page, server, session_id)
    expect_items(page, ["Still editing after two token lifetimes"])
    tokens_sent = [f["token"] for f in frames if "token" in f]
    assert len(tokens_sent) == 1, "one handshake, with the renewed token"
    assert tokens_sent[0] not in [*renewed, first_token]
    assert token_claims(tokens_sent[0])["exp"] > time.time()
    assert error_notices(page) == []


def test_a_socket_closed_with_4401_reconnects_with_a_refreshed_token(start_server, new_page):
    """No `token_expiring` warning (0 s): the server closes 4401 at expiry; the page refreshes and reconnects."""
    server = start_server(JWT_ACCESS_LIFETIME=5, SESSIONS_TOKEN_EXPIRY_WARNING=0)
    page = new_page()
    every_frame = record_frames(page)
    sign_in(page, server, "alice")
    create_session(page, "Short tokens")
    add_item(page, "Before expiry")
    frames = record_frames(page)
    record_statuses(page)

    # The drop is short: watch the recorded statuses rather than poll the indicator.
    # A function, not an expression string: Playwright evaluates a string with eval, which the CSP refuses.
    page.wait_for_function("() => window.__statuses.includes('reconnecting')", timeout=15_000)
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
    add_item(page, "After the new handshake")
    expect_all_sent(page)
    expect_items(page, ["Before expiry", "After the new handshake"])

    handshakes = [f["token"] for f in frames if "token" in f]
    assert handshakes, "a new socket was opened"
    every_handshake = [f["token"] for f in every_frame if "token" in f]
    assert every_handshake[-1] == handshakes[-1]
    assert every_handshake[-1] not in every_handshake[:-1], "with the refreshed token"
    rejoins = [f["data"] for f in frames if f.get("state") == "join"]
    assert rejoins and all("since" in data for data in rejoins), "and the session was re-joined with since"
    assert "closed" not in statuses(page), "refreshed and reconnected, never gave up"
    assert error_notices(page) == []
