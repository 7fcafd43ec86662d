"""Issue 14, item 1: sign-in by email link (sessions_app/magiclinks.py, magic_views.py): the same
answer for any account, throttled with bounded rows, single-use, expiring, bound to the browser
that asked, and never an access token (socket and REST API)."""

import logging
import re
import socket
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import close_old_connections
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView
from sesame.utils import get_token

from sessions_app import magiclinks, mailer
from sessions_app.cookies import COOKIE_NAME
from sessions_app.models import MagicLink
from sessions_app.tokens import LoginRefreshToken
from tests.otp_utils import code_for, code_sign_in, pinned_clock  # noqa: F401 - pinned_clock: a fixture
from tests.test_handshake import handshake_with, refused
from tests.utils import access_for

ORIGIN = "http://testserver"
REQUEST = "/api/v1/login/magic/"
CLAIM = "/api/v1/login/magic/claim/"
LINK = re.compile(r"http://testserver/#(\S+)")

pytestmark = pytest.mark.django_db(transaction=True)  # the mail is queued on commit


@pytest.fixture(autouse=True)
def locmem_mail(settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []


@pytest.fixture
def erin(db: Any) -> Any:
    return get_user_model().objects.create_user("erin", email="erin@example.com", password="x-unused-password-x")


def browser() -> APIClient:
    """A browser on this site's own page (its own cookie jar)."""
    return APIClient(headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})


def ask(client: APIClient, login: str, **extra: Any) -> Any:
    return client.post(REQUEST, {"login": login}, format="json", **extra)


def mailed_link() -> dict[str, str]:
    """The link of the one message sent, as the page reads it from the fragment: {"link", "token"}."""
    assert mailer.wait_sent(), "the mail thread did not finish"
    assert len(mail.outbox) == 1, [m.subject for m in mail.outbox]
    fragment = parse_qs(LINK.search(mail.outbox[0].body).group(1))
    mail.outbox = []
    return {"link": fragment["link"][0], "token": fragment["sesame"][0]}


def claim(client: APIClient, link: dict[str, str]) -> Any:
    return client.post(CLAIM, link, format="json")


# --- asking -------------------------------------------------------------------------------------


def test_a_link_is_mailed_and_claimed_in_the_browser_that_asked_for_the_usual_token_pair(erin: Any) -> None:
    client = browser()
    answer = ask(client, "erin@example.com")
    assert answer.status_code == 202, answer.content
    nonce = answer.cookies[magiclinks.NONCE_COOKIE]
    assert nonce["httponly"] is True and nonce["samesite"] == "Strict" and nonce["path"] == "/api/v1/login/magic/"
    assert mailer.wait_sent()
    assert mail.outbox[0].to == ["erin@example.com"]
    assert nonce.value not in mail.outbox[0].body
    link = mailed_link()

    claimed = claim(client, link)
    assert claimed.status_code == 200, claimed.content
    assert set(claimed.json()) == {"access", "username"} and claimed.json()["username"] == "erin"
    access = jwt.decode(claimed.json()["access"], options={"verify_signature": False})
    assert access["token_type"] == "access" and str(access["user_id"]) == str(erin.pk)
    refresh = claimed.cookies[COOKIE_NAME]
    assert refresh["httponly"] is True and refresh["path"] == "/api/v1/token/cookie/"
    # The refresh cookie works with the pages' refresh endpoint like a password sign-in's.
    assert client.post("/api/v1/token/cookie/refresh/").status_code == 200
    row = MagicLink.objects.get()
    assert row.user == erin and row.used_at is not None and row.used_address == "127.0.0.1"


def test_by_username_too(erin: Any) -> None:
    client = browser()
    assert ask(client, "erin").status_code == 202
    assert claim(client, mailed_link()).status_code == 200


@pytest.mark.parametrize("login", ["nobody@example.com", "nobody", "ERIN-not"])
def test_an_unknown_account_gets_the_same_answer_and_cookie_and_no_mail(erin: Any, login: str) -> None:
    known, unknown = ask(browser(), "erin@example.com"), ask(browser(), login)
    assert (unknown.status_code, unknown.json()) == (known.status_code, known.json())
    assert set(unknown.cookies) == set(known.cookies) == {magiclinks.NONCE_COOKIE}
    assert mailer.wait_sent()
    assert [m.to for m in mail.outbox] == [["erin@example.com"]]
    assert MagicLink.objects.filter(user__isnull=True).count() == 1  # a row all the same (the throttle)


def test_an_inactive_user_or_one_without_email_gets_no_mail(erin: Any) -> None:
    get_user_model().objects.create_user("frank", password="x-unused-password-x")  # no email
    get_user_model().objects.filter(pk=erin.pk).update(is_active=False)
    for login in ["frank", "erin", "erin@example.com"]:
        assert ask(browser(), login).status_code == 202
    assert mailer.wait_sent()
    assert mail.outbox == []


def test_asking_needs_this_sites_own_page_and_a_login(erin: Any) -> None:
    assert APIClient().post(REQUEST, {"login": "erin"}, format="json").status_code == 403  # no Origin
    cross = APIClient(headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert ask(cross, "erin").status_code == 403
    assert browser().post(REQUEST, {}, format="json").status_code == 400
    assert ask(browser(), "x" * 255).status_code == 400
    assert MagicLink.objects.count() == 0


# --- throttle and bounded rows ----------------------------------------------------------------------


def test_throttled_per_login_known_or_not_alike_then_per_address(erin: Any, settings: Any) -> None:
    settings.SESSIONS_MAGIC_LINK_LIMIT = 2
    for login in ["erin@example.com", "nobody@example.com"]:
        answers = [ask(browser(), login, REMOTE_ADDR=f"10.0.0.{n}").status_code for n in range(3)]
        assert answers == [202, 202, 429], login
    throttled = ask(browser(), "ERIN@example.com ", REMOTE_ADDR="10.0.0.9")  # the same login, casefolded
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) == 3600
    # Per address: any logins.
    assert [ask(browser(), f"x{n}", REMOTE_ADDR="10.9.9.9").status_code for n in range(3)] == [202, 202, 429]
    assert mailer.wait_sent()
    assert len(mail.outbox) == 2
    assert MagicLink.objects.count() == 6  # refused requests store nothing


def test_one_account_asked_for_under_both_names_gets_no_more_than_the_limit(erin: Any, settings: Any) -> None:
    settings.SESSIONS_MAGIC_LINK_LIMIT = 2
    answers = [
        ask(browser(), login, REMOTE_ADDR=f"10.1.0.{n}").status_code
        for n, login in enumerate(["erin", "erin@example.com", "Erin@Example.com"])
    ]
    assert answers == [202, 202, 202]  # the same answer: the third sends nothing
    assert mailer.wait_sent()
    assert len(mail.outbox) == 2


def test_rows_older_than_the_window_are_deleted(erin: Any, settings: Any) -> None:
    settings.SESSIONS_MAGIC_LINK_LIMIT = 1
    ask(browser(), "a", REMOTE_ADDR="10.2.0.1")
    ask(browser(), "b", REMOTE_ADDR="10.2.0.2")
    MagicLink.objects.update(created_at=MagicLink.objects.first().created_at.replace(year=2020))
    assert ask(browser(), "a", REMOTE_ADDR="10.2.0.1").status_code == 202  # no longer throttled
    assert MagicLink.objects.count() == 1


def test_a_full_mail_queue_drops_the_message(erin: Any, settings: Any, caplog: Any) -> None:
    settings.SESSIONS_MAGIC_LINK_MAIL_QUEUE = 1
    gate = threading.Event()
    blocker = mailer._pool.submit(gate.wait)  # the mail thread busy
    try:
        assert mailer.send_later(subject="waits", body="", to="x@example.com") is True
        assert mailer.send_later(subject="dropped", body="", to="y@example.com") is False
        assert ask(browser(), "erin").status_code == 202  # the same answer, the message dropped
    finally:
        gate.set()
        blocker.result()
    assert mailer.wait_sent()
    assert [m.subject for m in mail.outbox] == ["waits"]
    assert "mail queue full (1 messages): a message was dropped" in caplog.text


# --- claiming -----------------------------------------------------------------------------------


def test_a_second_claim_is_refused(erin: Any) -> None:
    client = browser()
    ask(client, "erin")
    link = mailed_link()
    nonce = client.cookies[magiclinks.NONCE_COOKIE].value
    assert claim(client, link).status_code == 200
    client.cookies[magiclinks.NONCE_COOKIE] = nonce  # the success deleted it; replay with it
    again = claim(client, link)
    assert again.status_code == 401 and again.json()["code"] == magiclinks.USED


@pytest.mark.postgres  # SQLite's in-memory test database locks the table instead
def test_concurrent_claims_one_wins(erin: Any) -> None:
    client = browser()
    ask(client, "erin")
    link = mailed_link()
    nonce = client.cookies[magiclinks.NONCE_COOKIE].value
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(magiclinks.claim_link(link_id=link["link"], token=link["token"], nonce=nonce, address=None))
        except magiclinks.LinkRefused as error:
            results.append(error.code)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, results)).count("erin") == 1, results
    assert [r for r in results if isinstance(r, str)] == [magiclinks.USED] * 3


def test_an_expired_link_is_refused(erin: Any, settings: Any) -> None:
    client = browser()
    ask(client, "erin")
    link = mailed_link()
    MagicLink.objects.update(created_at=MagicLink.objects.get().created_at.replace(year=2020))
    answer = claim(client, link)
    assert answer.status_code == 401 and answer.json()["code"] == magiclinks.EXPIRED


def test_an_expired_token_is_refused_even_on_a_fresh_row(erin: Any, settings: Any) -> None:
    client = browser()
    ask(client, "erin")
    link = mailed_link()
    settings.SESSIONS_MAGIC_LINK_MAX_AGE = 1  # django-sesame's own timestamp check (max_age)
    time.sleep(1.1)
    answer = claim(client, link)
    assert answer.status_code == 401 and answer.json()["code"] == magiclinks.EXPIRED


def test_another_browser_is_refused_and_does_not_use_the_link_up(erin: Any) -> None:
    mine = browser()
    ask(mine, "erin")
    link = mailed_link()
    other = browser()
    answer = claim(other, link)  # no nonce cookie
    assert answer.status_code == 403 and answer.json()["code"] == magiclinks.OTHER_BROWSER
    ask(other, "someone-else")  # now with a nonce of its own: still another browser's
    answer = claim(other, link)
    assert answer.status_code == 403 and answer.json()["code"] == magiclinks.OTHER_BROWSER
    assert COOKIE_NAME not in answer.cookies
    assert claim(mine, link).status_code == 200


def test_a_second_link_from_the_same_browser_keeps_its_nonce_and_the_first_claim_ends_the_other(erin: Any) -> None:
    client = browser()
    ask(client, "erin")
    first = mailed_link()
    nonce = client.cookies[magiclinks.NONCE_COOKIE].value
    ask(client, "erin@example.com")
    second = mailed_link()
    assert client.cookies[magiclinks.NONCE_COOKIE].value == nonce
    assert claim(client, second).status_code == 200
    client.cookies[magiclinks.NONCE_COOKIE] = nonce
    answer = claim(client, first)  # SESAME_ONE_TIME: the claim updated last_login
    assert answer.status_code == 401 and answer.json()["code"] == magiclinks.INVALID


@pytest.mark.parametrize("kind", ["forged", "other_link", "jwt", "refresh_jwt", "empty_scope"])
def test_a_token_that_is_not_this_links_is_refused(erin: Any, kind: str) -> None:
    client = browser()
    ask(client, "erin")
    link = mailed_link()
    row = MagicLink.objects.get()
    token = {
        "forged": link["token"][:-4] + ("AAAA" if not link["token"].endswith("AAAA") else "BBBB"),
        "other_link": get_token(erin, magiclinks.scope_of("00000000-0000-0000-0000-000000000000")),
        "jwt": access_for(erin),
        "refresh_jwt": str(LoginRefreshToken.for_user(erin)),
        "empty_scope": get_token(erin),
    }[kind]
    answer = claim(client, {"link": str(row.pk), "token": token})
    assert answer.status_code == 401 and answer.json()["code"] == magiclinks.INVALID
    assert claim(client, link).status_code == 200  # the real one still works


def test_an_unknown_link_is_refused(erin: Any) -> None:
    client = browser()
    ask(client, "nobody")  # a row without a user
    row = MagicLink.objects.get()
    for link_id in [str(row.pk), "00000000-0000-0000-0000-000000000000"]:
        answer = claim(client, {"link": link_id, "token": get_token(erin, magiclinks.scope_of(link_id))})
        assert answer.status_code == 401 and answer.json()["code"] == magiclinks.INVALID


def test_a_changed_password_ends_the_link(erin: Any) -> None:
    client = browser()
    ask(client, "erin")
    link = mailed_link()
    erin.set_password("another-password-entirely")
    erin.save()
    assert claim(client, link).json()["code"] == magiclinks.INVALID


def test_a_changed_email_ends_the_link(erin: Any) -> None:
    client = browser()
    ask(client, "erin")
    link = mailed_link()
    get_user_model().objects.filter(pk=erin.pk).update(email="erin@elsewhere.example")
    assert claim(client, link).json()["code"] == magiclinks.INVALID


def test_claiming_needs_this_sites_own_page(erin: Any) -> None:
    client = browser()
    ask(client, "erin")
    link = mailed_link()
    client.credentials(HTTP_ORIGIN="https://evil.example", HTTP_SEC_FETCH_SITE="cross-site")
    assert claim(client, link).status_code == 403
    client.credentials(HTTP_ORIGIN=ORIGIN, HTTP_SEC_FETCH_SITE="same-origin")
    assert claim(client, link).status_code == 200


# --- never an access token ------------------------------------------------------------------------


class WhoAmI(APIView):
    """A REST view with the project's default authentication (sessions_app.tokens.JWTAuthentication)."""

    permission_classes = (IsAuthenticated,)

    def get(self, request: Any) -> Response:
        return Response({"user": request.user.pk})


def test_a_magic_token_is_no_access_token_on_the_rest_api(erin: Any) -> None:
    factory = APIRequestFactory()
    token = get_token(erin, magiclinks.scope_of("00000000-0000-0000-0000-000000000000"))
    for value in [token, get_token(erin)]:
        answer = WhoAmI.as_view()(factory.get("/", HTTP_AUTHORIZATION=f"Bearer {value}"))
        assert answer.status_code == 401, answer.data
    assert WhoAmI.as_view()(factory.get("/", HTTP_AUTHORIZATION=f"Bearer {access_for(erin)}")).status_code == 200


async def test_a_magic_token_is_no_access_token_on_the_socket(erin: Any) -> None:
    link_token = await database_sync_to_async(get_token)(
        erin, magiclinks.scope_of("00000000-0000-0000-0000-000000000000")
    )
    default_scope = await database_sync_to_async(get_token)(erin)
    for token in [link_token, default_scope]:
        await refused(await handshake_with({"token": token}))


# --- the log --------------------------------------------------------------------------------------


def test_requests_claims_and_refusals_are_logged_with_user_and_address_and_no_secret(erin: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="sessions_app.signin")
    client = browser()
    ask(client, "erin@example.com")
    nonce = client.cookies[magiclinks.NONCE_COOKIE].value
    link = mailed_link()
    claim(browser(), link)
    claim(client, link)
    claim(client, link)
    lines = [r.getMessage() for r in caplog.records if r.name == "sessions_app.signin"]
    assert lines[0].startswith(f"signin magic_requested user={erin.pk} address=127.0.0.1 link=")
    assert lines[1] == f"signin magic_refused user={erin.pk} address=127.0.0.1 reason=other_browser"
    assert lines[2].startswith(f"signin magic_claimed user={erin.pk} address=127.0.0.1 link=")
    assert lines[3] == f"signin magic_ok user={erin.pk} address=127.0.0.1"
    assert lines[4] == f"signin magic_refused user={erin.pk} address=127.0.0.1 reason=link_used"
    text = caplog.text
    for secret in [link["token"], nonce, "erin@example.com"]:
        assert secret not in text


# --- the admin ----------------------------------------------------------------------------------


def test_the_admin_lists_link_requests_read_only(erin: Any, client: Any) -> None:
    client.force_login(get_user_model().objects.create(username="root", is_staff=True, is_superuser=True))
    asker = browser()
    ask(asker, "erin")
    claim(asker, mailed_link())
    ask(browser(), "nobody", REMOTE_ADDR="10.3.0.1")
    listing = client.get(reverse("admin:sessions_app_magiclink_changelist"))
    assert listing.status_code == 200
    text = listing.content.decode()
    assert "erin" in text and "10.3.0.1" in text and "127.0.0.1" in text
    row = MagicLink.objects.get(user=erin)
    page = client.get(reverse("admin:sessions_app_magiclink_change", args=[row.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.get(reverse("admin:sessions_app_magiclink_add")).status_code == 403
    assert (
        client.post(reverse("admin:sessions_app_magiclink_change", args=[row.pk]), {"address": "1.2.3.4"}).status_code
        == 403
    )
    assert MagicLink.objects.get(pk=row.pk).address == "127.0.0.1"


# --- the mail server ------------------------------------------------------------------------------


def test_the_request_does_not_wait_for_a_stalled_mail_server_and_the_send_gives_up(
    erin: Any, settings: Any, caplog: Any
) -> None:
    """An SMTP server that accepts the connection and never answers: the request is answered while
    the message is still pending, and the mail thread gives up after EMAIL_TIMEOUT, logging it."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_TIMEOUT = 0.5
    gate = threading.Event()
    blocker = mailer._pool.submit(gate.wait)  # the mail thread busy: the request cannot wait for it
    with socket.create_server(("127.0.0.1", 0)) as stalled:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", stalled.getsockname()[1]
        try:
            assert ask(browser(), "erin").status_code == 202
            assert len(mailer._pending) == 1, "answered, the message still to send"
        finally:
            gate.set()
            blocker.result()
        assert mailer.wait_sent(timeout=30)
    errors = [r.getMessage() for r in caplog.records if r.name == "sessions_app.mailer"]
    assert errors and errors[0].startswith("mail not sent (1 recipient(s)): "), errors
    assert "sesame" not in errors[0]


# --- with two-factor sign-in on (sessions_app/second_factor.py) -----------------------------------


@pytest.mark.usefixtures("pinned_clock")
def test_a_link_of_a_user_with_two_factor_on_asks_for_the_code_before_any_token(erin: Any) -> None:
    device = TOTPDevice.objects.create(user=erin, name="phone", confirmed=True)
    client = browser()
    ask(client, "erin")
    claimed = claim(client, mailed_link())
    assert claimed.status_code == 200, claimed.content
    answer = claimed.json()
    assert answer["otp_required"] is True and answer["username"] == "erin"
    assert "access" not in answer and "refresh" not in answer
    assert COOKIE_NAME not in claimed.cookies  # no refresh token either
    # The ticket is the pages' (cookie endpoint) only, and a code from the device finishes it.
    assert code_sign_in(answer["ticket"], code_for(device.bin_key)).status_code == 401
    finished = code_sign_in(answer["ticket"], code_for(device.bin_key), cookie=True, client=client)
    assert finished.status_code == 200, finished.content
    access = jwt.decode(finished.json()["access"], options={"verify_signature": False})
    assert str(access["user_id"]) == str(erin.pk)
    assert finished.cookies[COOKIE_NAME]["httponly"] is True
