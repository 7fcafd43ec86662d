"""Issue 14, "Done when" (the TOTP side): in Chromium, a user turns two-factor sign-in on from the
home page (QR code and secret shown once, confirmed with a code computed from that secret), sees
the recovery codes once, signs in by password + TOTP code and edits a session; another browser
signs in with a recovery code and turns two-factor off."""

import re
import time

import pytest
from django_otp.oath import TOTP
from playwright.sync_api import Page, expect

from tests import live
from tests.e2e.conftest import DESKTOP
from tests.e2e.ui import add_item, create_session, expect_all_sent, expect_items, shot, sign_in
from tests.otp_utils import secret_key

pytestmark = pytest.mark.e2e


def code_now(secret: str, step_offset: int = 0) -> str:
    """The code an authenticator app shows for ``secret`` (real time; ``step_offset`` 30-second
    steps ahead: the server accepts one step either side, and each step once)."""
    totp = TOTP(secret_key(secret), step=30, t0=0, digits=6, drift=0)
    totp.time = time.time() + 30 * step_offset
    return f"{totp.token():06d}"


def password_step(page: Page, server: live.Daphne, username: str) -> None:
    page.goto(server.http + "/")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password").fill(live.PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def code_step(page: Page, code: str) -> None:
    expect(page.get_by_label("Authentication code")).to_be_visible()
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Verify").click()


def expect_signed_in(page: Page) -> None:
    expect(page.get_by_role("heading", name="My sessions")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-status", "connected")


def test_turn_on_two_factor_then_sign_in_by_password_and_code_and_edit_a_session(start_server, new_page):
    # No per-device wait after the wrong code tried below (django-otp's throttle is tested in
    # tests/test_second_factor.py): the right code straight after it must pass here.
    server = start_server(OTP_TOTP_THROTTLE_FACTOR="0", OTP_STATIC_THROTTLE_FACTOR="0")
    page = new_page(DESKTOP)
    sign_in(page, server, "alice")

    panel = page.locator("#two-factor")
    expect(panel.locator("#otp-status")).to_have_text(re.compile("^Off"))
    panel.get_by_role("button", name="Set up two-factor sign-in").click()
    expect(panel.get_by_role("img", name="QR code that sets up your authenticator app")).to_be_visible()
    secret = panel.locator("#otp-secret").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    qr_width = panel.locator("#otp-qr").evaluate("(img) => img.naturalWidth")
    assert qr_width > 100, "the QR code SVG was drawn"
    shot(page, "two-factor-setup")

    panel.get_by_label("Code from the app", exact=True).fill(code_now(secret))
    panel.get_by_role("button", name="Turn on").click()
    codes_section = page.locator("#recovery-codes")
    expect(codes_section).to_be_visible()
    expect(codes_section.locator("li")).to_have_count(10)
    recovery = [text.replace("-", "") for text in codes_section.locator("li").all_inner_texts()]
    # Turning it on ended this sign-in too: the page asks for the password again.
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.locator("#notices")).to_have_text(re.compile("Two-factor sign-in is on. Sign in again"))
    shot(page, "two-factor-recovery-codes")
    codes_section.get_by_role("button", name="I have saved them").click()
    expect(codes_section).to_be_hidden()
    assert page.locator("#recovery-list li").count() == 0

    # Password, then the code: no token before it.
    password_step(page, server, "alice")
    expect(page.get_by_label("Authentication code")).to_be_visible()
    assert page.evaluate("() => localStorage.getItem('sessions.user')") is None
    code_step(page, "000000" if code_now(secret, 1) != "000000" else "111111")
    expect(page.locator("#otp-error")).to_have_text(re.compile("Wrong code"))
    shot(page, "two-factor-code-step")
    code_step(page, code_now(secret, 1))
    expect_signed_in(page)
    expect(page.locator("#otp-status")).to_have_text(re.compile("^On: .* 10 recovery codes left"))

    session_id = create_session(page, "Two factors")
    add_item(page, "Milk")
    add_item(page, "Bread")
    expect_all_sent(page)
    expect_items(page, ["Milk", "Bread"])
    assert session_id

    # Another browser: the password and a recovery code; then turning it off with another one.
    other = new_page(DESKTOP)
    password_step(other, server, "alice")
    code_step(other, recovery[0])
    expect_signed_in(other)
    expect(other.locator("#otp-status")).to_have_text(re.compile("9 recovery codes left"))
    other.get_by_label("Code from the app, or a recovery code").fill(recovery[0])
    other.get_by_role("button", name="Turn off two-factor").click()
    expect(other.locator("#otp-panel-error")).to_have_text(re.compile("Wrong code, or a code already used"))
    other.get_by_label("Code from the app, or a recovery code").fill(recovery[1])
    other.get_by_role("button", name="Turn off two-factor").click()
    expect(other.get_by_role("button", name="Sign in")).to_be_visible()
    expect(other.locator("#notices")).to_have_text(re.compile("Two-factor sign-in is off"))
    # Off: the password alone signs in again (and the first browser was signed out too).
    sign_in(other, server, "alice")
    expect(other.locator("#otp-status")).to_have_text(re.compile("^Off"))
    expect(page.locator("#notices")).to_have_text(re.compile("signed out"))
