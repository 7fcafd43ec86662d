"""Issue 14, item 2 (and items 3, 4 for this side): optional TOTP two-factor sign-in with
django-otp. Enrolment, the ticket of a password sign-in and its code (TOTP or recovery), a wrong
and a reused code, both throttles, ticket expiry/replay/forgery, the JSON and cookie token APIs
refusing tokens without the code, removal needing a fresh code, the admin."""

import datetime
from typing import Any

import jwt
import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from sessions_app import otp_devices
from sessions_app.cookies import COOKIE_NAME
from sessions_app.models import SignInTicket
from sessions_app.second_factor import TICKETS_PER_USER
from tests.otp_utils import (
    PASSWORD,
    bearer,
    code_for,
    code_sign_in,
    page,
    password_sign_in,
    pinned_clock,  # noqa: F401 - a fixture
    secret_key,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("pinned_clock")]

LIMIT = 5  # SESSIONS_LOGIN_FAILURE_LIMIT's default


@pytest.fixture(autouse=True)
def fast_hashes_and_no_device_throttle(settings: Any) -> None:
    """MD5 hashes (speed); django-otp's per-device throttle off unless a test turns it on: with
    its default factor (1 s after one wrong code) a right code straight after a wrong one would
    pass or not depending on how fast the test runs."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


@pytest.fixture
def dave(db: Any) -> Any:
    return get_user_model().objects.create_user("dave", password=PASSWORD)


@pytest.fixture
def enrolled(dave: Any) -> dict[str, Any]:
    """dave with a confirmed device (through the API) and his recovery codes."""
    access = password_sign_in("dave").json()["access"]
    started = bearer(access).post("/api/v1/otp/enrol/").json()
    key = secret_key(started["secret"])
    confirmed = bearer(access).post("/api/v1/otp/confirm/", {"code": code_for(key, -1)}, format="json")
    assert confirmed.status_code == 200, confirmed.content
    return {"key": key, "recovery": confirmed.json()["recovery_codes"]}


def ticket_of(response: Any) -> str:
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"otp_required", "ticket", "expires_in"}, body
    assert body["otp_required"] is True
    return body["ticket"]


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


# --- enrolment ---------------------------------------------------------------------------------------


def test_enrolment_shows_the_secret_once_and_confirms_only_with_a_code_of_the_new_device(dave: Any) -> None:
    pair = password_sign_in("dave").json()
    api = bearer(pair["access"])
    assert api.get("/api/v1/otp/").json() == {"enrolled": False, "pending": False, "recovery_codes_left": 0}

    started = api.post("/api/v1/otp/enrol/")
    assert started.status_code == 200
    assert started["Cache-Control"] == "no-store"
    body = started.json()
    device = TOTPDevice.objects.get(user=dave)
    assert device.confirmed is False
    assert secret_key(body["secret"]) == device.bin_key
    assert body["otpauth_uri"].startswith("otpauth://totp/Interactive%20sessions%3Adave?secret=" + body["secret"])
    assert "issuer=Interactive%20sessions" in body["otpauth_uri"]
    assert body["qr_svg"].startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in body["qr_svg"]
    assert api.get("/api/v1/otp/").json()["pending"] is True
    # A pending device asks nothing at sign-in.
    assert set(password_sign_in("dave").json()) == {"refresh", "access"}

    # Starting again replaces the pending device: the first secret is dead.
    again = api.post("/api/v1/otp/enrol/").json()
    assert again["secret"] != body["secret"]
    assert TOTPDevice.objects.filter(user=dave).count() == 1
    key = secret_key(again["secret"])

    assert (
        api.post("/api/v1/otp/confirm/", {"code": code_for(secret_key(body["secret"]))}, format="json").status_code
        == 401
    )
    assert api.post("/api/v1/otp/confirm/", {}, format="json").status_code == 400
    confirmed = api.post("/api/v1/otp/confirm/", {"code": code_for(key)}, format="json")
    assert confirmed.status_code == 200, confirmed.content
    assert confirmed["Cache-Control"] == "no-store"
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert TOTPDevice.objects.get(user=dave).confirmed is True
    assert StaticToken.objects.filter(device__user=dave).count() == 10
    assert api.get("/api/v1/otp/").json() == {"enrolled": True, "pending": False, "recovery_codes_left": 10}
    # One device per user: another enrolment waits for a removal.
    conflict = api.post("/api/v1/otp/enrol/")
    assert (
        conflict.status_code == 409
        and conflict.json()["detail"] == "Two-factor sign-in is already on; remove it first."
    )
    # Turning it on ended the sign-in made with the password alone.
    assert APIClient().post("/api/v1/token/refresh/", {"refresh": pair["refresh"]}, format="json").status_code == 401


def test_the_enrolment_endpoints_need_an_access_token(dave: Any) -> None:
    for path in ("/api/v1/otp/enrol/", "/api/v1/otp/confirm/", "/api/v1/otp/remove/", "/api/v1/otp/recovery-codes/"):
        assert APIClient().post(path, {"code": "123456"}, format="json").status_code == 401, path
    assert APIClient().get("/api/v1/otp/").status_code == 401


def test_the_number_of_recovery_codes_is_a_setting(dave: Any, settings: Any) -> None:
    settings.SESSIONS_OTP_RECOVERY_CODES = 3
    api = bearer(password_sign_in("dave").json()["access"])
    key = secret_key(api.post("/api/v1/otp/enrol/").json()["secret"])
    assert len(api.post("/api/v1/otp/confirm/", {"code": code_for(key)}, format="json").json()["recovery_codes"]) == 3


# --- sign-in: no token without the code ------------------------------------------------------------


def test_the_json_token_api_gives_an_enrolled_user_a_ticket_and_no_token_until_the_code(
    enrolled: Any, dave: Any
) -> None:
    ticket = ticket_of(password_sign_in("dave"))
    answer = code_sign_in(ticket, code_for(enrolled["key"]))
    assert answer.status_code == 200, answer.content
    assert answer["Cache-Control"] == "no-store"
    pair = answer.json()
    assert set(pair) == {"refresh", "access"}
    assert str(claims(pair["access"])["user_id"]) == str(dave.pk)
    assert claims(pair["refresh"])["auth_time"] <= int(timezone.now().timestamp())
    # The pair works as any other: refresh, and the REST API.
    assert APIClient().post("/api/v1/token/refresh/", {"refresh": pair["refresh"]}, format="json").status_code == 200
    assert bearer(pair["access"]).get("/api/v1/otp/").json()["enrolled"] is True


def test_the_cookie_sign_in_gives_a_ticket_and_no_cookie_until_the_code(enrolled: Any) -> None:
    client = page()
    first = password_sign_in("dave", cookie=True, client=client)
    ticket = ticket_of(first)
    assert COOKIE_NAME not in first.cookies
    assert client.post("/api/v1/token/cookie/refresh/", {}, format="json").status_code == 401
    done = code_sign_in(ticket, code_for(enrolled["key"]), cookie=True, client=client)
    assert done.status_code == 200, done.content
    assert set(done.json()) == {"access"}
    cookie = done.cookies[COOKIE_NAME]
    assert (cookie["httponly"], cookie["samesite"], cookie["path"]) == (True, "Strict", "/api/v1/token/cookie/")
    assert claims(cookie.value)["token_type"] == "refresh"
    assert client.post("/api/v1/token/cookie/refresh/", {}, format="json").status_code == 200


def test_a_ticket_is_good_only_at_the_endpoint_family_that_issued_it(enrolled: Any) -> None:
    cookie_ticket = ticket_of(password_sign_in("dave", cookie=True))
    json_ticket = ticket_of(password_sign_in("dave"))
    refused = code_sign_in(cookie_ticket, code_for(enrolled["key"]))
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_ticket"
    assert code_sign_in(json_ticket, code_for(enrolled["key"]), cookie=True).status_code == 401
    # The cookie endpoint wants the site's own pages, as the cookie sign-in does.
    assert code_sign_in(cookie_ticket, code_for(enrolled["key"]), client=APIClient(), cookie=True).status_code == 403
    assert code_sign_in(cookie_ticket, code_for(enrolled["key"]), cookie=True).status_code == 200


def test_a_wrong_password_of_an_enrolled_user_gets_neither_ticket_nor_token(enrolled: Any) -> None:
    response = APIClient().post("/api/v1/token/", {"username": "dave", "password": "nope"}, format="json")
    assert response.status_code == 401
    assert "ticket" not in response.json() and "access" not in response.json()


# --- codes: wrong, reused, recovery ------------------------------------------------------------------


def test_a_wrong_code_is_refused_and_the_ticket_stays_good_for_the_right_one(enrolled: Any) -> None:
    ticket = ticket_of(password_sign_in("dave"))
    right = code_for(enrolled["key"])
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for bad in (wrong, "12345", "abcdefghijklmnopq", ""):
        answer = code_sign_in(ticket, bad)
        assert answer.status_code in (400, 401), (bad, answer.content)
        assert "access" not in answer.json()
    assert code_sign_in(ticket, wrong).json() == {
        "detail": "The code is wrong or was already used.",
        "code": "invalid_code",
    }
    assert code_sign_in(ticket, right).status_code == 200


def test_a_code_is_good_once_even_for_another_sign_in(enrolled: Any) -> None:
    # The enrolment spent step -1; now step 0's code, then step 0's again, then step +1's.
    code = code_for(enrolled["key"], 0)
    assert code_sign_in(ticket_of(password_sign_in("dave")), code).status_code == 200
    again = code_sign_in(ticket_of(password_sign_in("dave")), code)
    assert again.status_code == 401 and again.json()["code"] == "invalid_code"
    # An older step than the last one accepted is refused too (django-otp's last_t).
    assert code_sign_in(ticket_of(password_sign_in("dave")), code_for(enrolled["key"], -1)).status_code == 401
    assert code_sign_in(ticket_of(password_sign_in("dave")), code_for(enrolled["key"], 1)).status_code == 200


def test_a_recovery_code_signs_in_once(enrolled: Any, dave: Any) -> None:
    code = enrolled["recovery"][0]
    shown = f" {code[:4].upper()}-{code[4:]} "  # as a person may type it
    assert code_sign_in(ticket_of(password_sign_in("dave")), shown).status_code == 200
    assert code_sign_in(ticket_of(password_sign_in("dave")), code).status_code == 401
    assert StaticToken.objects.filter(device__user=dave).count() == 9
    assert (
        bearer(password_sign_in_with(code_for(enrolled["key"]))["access"])
        .get("/api/v1/otp/")
        .json()["recovery_codes_left"]
        == 9
    )


def password_sign_in_with(code: str) -> dict[str, str]:
    answer = code_sign_in(ticket_of(password_sign_in("dave")), code)
    assert answer.status_code == 200, answer.content
    return answer.json()


# --- throttling ---------------------------------------------------------------------------------------


def test_the_device_throttles_after_a_wrong_code_even_the_right_one(enrolled: Any, settings: Any) -> None:
    settings.OTP_TOTP_THROTTLE_FACTOR = 600  # 600 s after one failure (django-otp: factor * 2**(n-1))
    ticket = ticket_of(password_sign_in("dave"))
    right = code_for(enrolled["key"])
    assert code_sign_in(ticket, f"{(int(right) + 1) % 1_000_000:06d}").status_code == 401
    throttled = code_sign_in(ticket, right)
    assert throttled.status_code == 429, throttled.content
    assert throttled.json() == {"detail": "Too many wrong codes; wait before trying again.", "code": "otp_throttled"}
    assert 590 <= int(throttled["Retry-After"]) <= 601
    # Once the wait is over the right code passes (the failure made 600 s older instead of waiting).
    TOTPDevice.objects.update(throttling_failure_timestamp=timezone.now() - datetime.timedelta(seconds=601))
    assert code_sign_in(ticket, right).status_code == 200


def test_wrong_codes_count_as_failed_sign_ins_for_the_account_like_passwords(enrolled: Any) -> None:
    right = code_for(enrolled["key"])
    ticket = ticket_of(password_sign_in("dave", REMOTE_ADDR="10.0.0.1"))
    for n in range(LIMIT):
        address = f"10.0.1.{n}"  # from any addresses
        answer = code_sign_in(ticket, f"{(int(right) + 1 + n) % 1_000_000:06d}", REMOTE_ADDR=address)
        # The limit-th failure is answered 429, as for passwords (tests/test_lockout.py).
        assert answer.status_code == (429 if n == LIMIT - 1 else 401), (n, answer.content)
    assert AccessAttempt.objects.filter(username="dave").exists()
    locked = code_sign_in(ticket, right, REMOTE_ADDR="10.0.2.1")
    assert locked.status_code == 429 and locked.json()["detail"].startswith("Too many failed sign-ins")
    assert password_sign_in("dave", REMOTE_ADDR="10.0.2.2").status_code == 429  # the password step too


# --- the ticket: expiry, replay, forgery, bounds ----------------------------------------------------


def test_a_ticket_is_single_use(enrolled: Any) -> None:
    ticket = ticket_of(password_sign_in("dave"))
    assert code_sign_in(ticket, code_for(enrolled["key"], 0)).status_code == 200
    replay = code_sign_in(ticket, code_for(enrolled["key"], 1))
    assert replay.status_code == 401 and replay.json() == {
        "detail": "The sign-in ticket is not valid (expired or already used); sign in again.",
        "code": "invalid_ticket",
    }
    replay = code_sign_in(ticket, enrolled["recovery"][0])
    assert replay.status_code == 401


def test_a_ticket_expires_after_its_lifetime(enrolled: Any, settings: Any) -> None:
    settings.SESSIONS_OTP_TICKET_LIFETIME = 120
    answer = password_sign_in("dave")
    assert answer.json()["expires_in"] == 120
    row = SignInTicket.objects.get()
    assert 119 <= (row.expires_at - row.created_at).total_seconds() <= 121
    SignInTicket.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert code_sign_in(answer.json()["ticket"], code_for(enrolled["key"])).status_code == 401


def test_a_forged_or_altered_ticket_is_refused_and_only_its_digest_is_stored(enrolled: Any) -> None:
    ticket = ticket_of(password_sign_in("dave"))
    assert not SignInTicket.objects.filter(digest=ticket).exists()
    for forged in ("x" * 43, ticket[:-1] + ("A" if ticket[-1] != "A" else "B"), ticket + "x"):
        assert code_sign_in(forged, code_for(enrolled["key"])).status_code == 401
    assert code_sign_in(ticket, code_for(enrolled["key"])).status_code == 200


def test_a_password_change_or_deactivation_ends_a_ticket(enrolled: Any, dave: Any) -> None:
    ticket = ticket_of(password_sign_in("dave"))
    dave.set_password("another-Password-9")
    dave.save()
    assert code_sign_in(ticket, code_for(enrolled["key"])).status_code == 401
    dave.set_password(PASSWORD)
    dave.save()
    ticket = ticket_of(password_sign_in("dave"))
    get_user_model().objects.filter(pk=dave.pk).update(is_active=False)
    assert code_sign_in(ticket, code_for(enrolled["key"])).status_code == 401


def test_tickets_per_user_are_bounded(enrolled: Any) -> None:
    tickets = [ticket_of(password_sign_in("dave")) for _ in range(TICKETS_PER_USER + 3)]
    assert SignInTicket.objects.count() == TICKETS_PER_USER
    assert code_sign_in(tickets[0], code_for(enrolled["key"])).status_code == 401  # the oldest went
    assert code_sign_in(tickets[-1], code_for(enrolled["key"])).status_code == 200


# --- removal and new recovery codes ----------------------------------------------------------------


def test_removal_needs_a_fresh_code_and_ends_every_sign_in(enrolled: Any, dave: Any) -> None:
    pair = password_sign_in_with(code_for(enrolled["key"], 0))
    api = bearer(pair["access"])
    assert api.post("/api/v1/otp/remove/", {}, format="json").status_code == 400
    assert api.post("/api/v1/otp/remove/", {"code": code_for(enrolled["key"], 0)}, format="json").status_code == 401
    assert TOTPDevice.objects.filter(user=dave).exists()
    assert api.post("/api/v1/otp/remove/", {"code": code_for(enrolled["key"], 1)}, format="json").status_code == 200
    assert not TOTPDevice.objects.filter(user=dave).exists()
    assert not StaticDevice.objects.filter(user=dave).exists()
    assert APIClient().post("/api/v1/token/refresh/", {"refresh": pair["refresh"]}, format="json").status_code == 401
    assert set(password_sign_in("dave").json()) == {"refresh", "access"}  # the password alone again


def test_removal_with_a_recovery_code(enrolled: Any, dave: Any) -> None:
    api = bearer(password_sign_in_with(code_for(enrolled["key"]))["access"])
    assert api.post("/api/v1/otp/remove/", {"code": enrolled["recovery"][3]}, format="json").status_code == 200
    assert not TOTPDevice.objects.filter(user=dave).exists()


def test_new_recovery_codes_need_a_fresh_code_and_void_the_old_ones(enrolled: Any) -> None:
    api = bearer(password_sign_in_with(code_for(enrolled["key"], 0))["access"])
    assert api.post("/api/v1/otp/recovery-codes/", {"code": "000000"}, format="json").status_code in (401,)
    answer = api.post("/api/v1/otp/recovery-codes/", {"code": enrolled["recovery"][0]}, format="json")
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    fresh = answer.json()["recovery_codes"]
    assert not set(fresh) & set(enrolled["recovery"])
    assert code_sign_in(ticket_of(password_sign_in("dave")), enrolled["recovery"][1]).status_code == 401
    assert code_sign_in(ticket_of(password_sign_in("dave")), fresh[0]).status_code == 200


def test_without_a_device_the_code_endpoints_refuse(dave: Any) -> None:
    api = bearer(password_sign_in("dave").json()["access"])
    assert api.post("/api/v1/otp/recovery-codes/", {"code": "123456"}, format="json").status_code == 401
    assert api.post("/api/v1/otp/remove/", {"code": "abcdefgh"}, format="json").status_code == 401
    assert api.post("/api/v1/otp/confirm/", {"code": "123456"}, format="json").status_code == 401


# --- the admin ----------------------------------------------------------------------------------------


def test_the_admin_shows_a_users_devices_without_secrets_and_removal_ends_their_sign_ins(
    enrolled: Any, dave: Any
) -> None:
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", password=PASSWORD))
    pair = password_sign_in_with(code_for(enrolled["key"]))
    page_text = admin.get(f"/admin/auth/user/{dave.pk}/change/").content.decode()
    assert "Authenticator app" in page_text and "Recovery codes" in page_text
    device = TOTPDevice.objects.get(user=dave)
    assert device.key not in page_text
    assert not any(code in page_text for code in enrolled["recovery"])
    listing = admin.get("/admin/otp_totp/totpdevice/")
    assert listing.status_code == 200 and "dave" in listing.content.decode()
    detail = admin.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").content.decode()
    assert device.key not in detail  # OTP_ADMIN_HIDE_SENSITIVE_DATA
    deleted = admin.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not otp_devices.has_second_factor(dave)
    assert APIClient().post("/api/v1/token/refresh/", {"refresh": pair["refresh"]}, format="json").status_code == 401


def test_the_admin_login_of_a_user_with_two_factor_asks_for_the_code(enrolled: Any, dave: Any) -> None:
    get_user_model().objects.filter(pk=dave.pk).update(is_staff=True, is_superuser=True)
    browser = Client()
    first = browser.post("/admin/login/", {"username": "dave", "password": PASSWORD})
    assert first.status_code == 200, "not signed in by the password alone"
    assert "Authentication code" in first.content.decode()
    assert browser.get("/admin/").status_code == 302  # still to the login page
    wrong = browser.post(
        "/admin/login/", {"username": "dave", "password": PASSWORD, "otp_token": code_for(enrolled["key"], -1)}
    )
    assert wrong.status_code == 200 and "The code is wrong or was already used." in wrong.content.decode()
    right = browser.post(
        "/admin/login/", {"username": "dave", "password": PASSWORD, "otp_token": code_for(enrolled["key"], 0)}
    )
    assert right.status_code == 302, right.content.decode()[-2000:]
    assert browser.get("/admin/").status_code == 200


def test_the_admin_login_of_a_user_without_two_factor_is_the_password_alone(dave: Any) -> None:
    get_user_model().objects.filter(pk=dave.pk).update(is_staff=True, is_superuser=True)
    browser = Client()
    page_text = browser.get("/admin/login/").content.decode()
    assert "Authentication code" not in page_text
    assert browser.post("/admin/login/", {"username": "dave", "password": PASSWORD}).status_code == 302


def test_turning_two_factor_on_needs_a_recent_sign_in(dave: Any, settings: Any) -> None:
    """A token of an older sign-in (refreshing keeps ``auth_time``) cannot enrol its holder's
    authenticator: 403 ``sign_in_again``, for the start and for the confirmation."""
    from sessions_app.tokens import LoginRefreshToken

    refresh = LoginRefreshToken.for_user(dave)
    refresh["auth_time"] = int(timezone.now().timestamp()) - 601
    old = bearer(str(refresh.access_token))
    refused = old.post("/api/v1/otp/enrol/")
    assert refused.status_code == 403, refused.content
    assert refused.json()["code"] == "sign_in_again"
    assert not TOTPDevice.objects.filter(user=dave).exists()

    fresh = bearer(password_sign_in("dave").json()["access"])
    key = secret_key(fresh.post("/api/v1/otp/enrol/").json()["secret"])
    late = old.post("/api/v1/otp/confirm/", {"code": code_for(key, -1)}, format="json")
    assert late.status_code == 403 and late.json()["code"] == "sign_in_again"
    assert TOTPDevice.objects.get(user=dave).confirmed is False
    settings.SESSIONS_OTP_ENROL_SIGN_IN_AGE = 3600
    assert old.post("/api/v1/otp/confirm/", {"code": code_for(key, -1)}, format="json").status_code == 200
