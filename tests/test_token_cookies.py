"""Issue 12, item 6 (the server's side): the pages' token API keeps the refresh token in an HttpOnly,
SameSite=Strict cookie scoped to /api/v1/token/cookie/ (sessions_app/cookies.py); the JSON token
API for scripts and apps is unchanged."""

import time
from http.cookies import Morsel
from typing import Any

import jwt
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from sessions_app.cookies import COOKIE_NAME, COOKIE_PATH, SECURE_COOKIE_NAME
from tests.test_revocation import ended
from tests.utils import connected

PASSWORD = "correct-horse-battery-staple"
ORIGIN = "http://testserver"  # the test client's own origin (Django's test host)
SIGN_IN = "/api/v1/token/cookie/"
REFRESH = "/api/v1/token/cookie/refresh/"
REVOKE = "/api/v1/token/cookie/revoke/"


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def dave(db: Any) -> Any:
    return get_user_model().objects.create_user("dave", password=PASSWORD)


def page(**headers: str) -> APIClient:
    """A browser on this site's own page: ``Origin`` and ``Sec-Fetch-Site`` as Chromium sends them."""
    return APIClient(headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", **headers})


def sign_in(client: APIClient, username: str = "dave", password: str = PASSWORD, **extra: Any) -> Any:
    return client.post(SIGN_IN, {"username": username, "password": password}, format="json", **extra)


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def cookie_of(response: Any, name: str = COOKIE_NAME) -> Morsel:
    assert name in response.cookies, f"no {name} cookie in {response.cookies}"
    return response.cookies[name]


def json_refresh(token: str) -> int:
    """The status of the JSON API's refresh with ``token`` in the body."""
    return APIClient().post("/api/v1/token/refresh/", {"refresh": token}, format="json").status_code


# --- the cookie and its attributes ----------------------------------------------------------------


def test_sign_in_puts_the_refresh_token_in_an_httponly_strict_cookie_and_only_the_access_token_in_the_body(
    dave: Any,
) -> None:
    before = int(time.time())
    response = sign_in(page())
    after = int(time.time())
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"access"}
    assert claims(response.json()["access"])["token_type"] == "access"
    cookie = cookie_of(response)
    assert claims(cookie.value)["token_type"] == "refresh"
    assert str(claims(cookie.value)["user_id"]) == str(dave.pk)
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == COOKIE_PATH
    assert not cookie["secure"], "plain HTTP (development): no Secure"
    # Max-Age: the refresh token's remaining life (JWT_REFRESH_LIFETIME, a day by default).
    max_age = int(cookie["max-age"])
    assert before + max_age <= claims(cookie.value)["exp"] <= after + max_age + 1
    assert claims(cookie.value)["exp"] - claims(cookie.value)["iat"] == 86400


def test_over_https_the_cookie_is_secure_and_has_the_secure_prefix(dave: Any) -> None:
    client = APIClient(headers={"Origin": "https://testserver", "Sec-Fetch-Site": "same-origin"})
    response = sign_in(client, secure=True)
    assert response.status_code == 200, response.content
    assert COOKIE_NAME not in response.cookies
    cookie = cookie_of(response, SECURE_COOKIE_NAME)
    assert cookie["secure"] is True
    assert (cookie["httponly"], cookie["samesite"], cookie["path"]) == (True, "Strict", COOKIE_PATH)
    # Over HTTPS only the __Secure- cookie is read: a plain one (which an http: page could set) is not.
    client.cookies.pop(SECURE_COOKIE_NAME)
    client.cookies[COOKIE_NAME] = cookie.value
    assert client.post(REFRESH, {}, format="json", secure=True).status_code == 401
    client.cookies[SECURE_COOKIE_NAME] = cookie.value
    again = client.post(REFRESH, {}, format="json", secure=True)
    assert again.status_code == 200
    assert cookie_of(again, SECURE_COOKIE_NAME)["secure"] is True


def test_the_cookie_lives_no_longer_than_the_sign_in(dave: Any, settings: Any) -> None:
    settings.SESSIONS_LOGIN_MAX_AGE = 600
    cookie = cookie_of(sign_in(page()))
    assert 590 <= int(cookie["max-age"]) <= 600


def test_wrong_credentials_set_no_cookie(dave: Any) -> None:
    response = sign_in(page(), password="wrong")
    assert response.status_code == 401
    assert COOKIE_NAME not in response.cookies


# --- refresh: rotation through the cookie ---------------------------------------------------------


def test_refresh_with_the_cookie_rotates_it_and_the_old_one_is_refused(dave: Any) -> None:
    client = page()
    first = cookie_of(sign_in(client)).value
    response = client.post(REFRESH, {}, format="json")
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"access"}, "the refresh token never appears in the body"
    second = cookie_of(response)
    assert second.value != first
    assert (second["httponly"], second["samesite"], second["path"]) == (True, "Strict", COOKIE_PATH)
    assert claims(second.value)["auth_time"] == claims(first)["auth_time"]

    # The browser now sends the rotated cookie; the old one is blacklisted (SimpleJWT's rotation).
    stale = page()
    stale.cookies[COOKIE_NAME] = first
    refused = stale.post(REFRESH, {}, format="json")
    assert refused.status_code == 401
    assert COOKIE_NAME not in refused.cookies, "a refusal leaves the cookie alone (it may have raced a rotation)"
    assert json_refresh(first) == 401
    assert client.post(REFRESH, {}, format="json").status_code == 200


def test_refresh_without_a_cookie_is_refused_and_the_body_is_not_read(dave: Any) -> None:
    response = sign_in(page())
    token = cookie_of(response).value
    cookieless = page()
    assert cookieless.post(REFRESH, {"refresh": token}, format="json").status_code == 401
    assert json_refresh(token) == 200, "the token in the body was not used (nor blacklisted)"


def test_a_password_change_ends_the_cookie_too(dave: Any) -> None:
    client = page()
    sign_in(client)
    dave.set_password("another-Pw-1618")
    dave.save()
    assert client.post(REFRESH, {}, format="json").status_code == 401


# --- cross-site requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},  # an older browser: no Sec-Fetch-Site
        {"Origin": "http://testserver:8001", "Sec-Fetch-Site": "same-site"},  # another port: same site
        {"Origin": "https://testserver", "Sec-Fetch-Site": "same-site"},  # another scheme
        {"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
        {},  # no Origin at all
    ],
    ids=["cross-site", "foreign-origin", "other-port", "other-scheme", "fetch-site-cross", "null", "no-origin"],
)
def test_cookie_endpoints_refuse_requests_not_from_this_sites_pages(dave: Any, headers: dict[str, str]) -> None:
    token = cookie_of(sign_in(page())).value
    foreign = APIClient(headers=headers)
    foreign.cookies[COOKIE_NAME] = token  # as if the browser attached it (SameSite aside)

    refreshed = foreign.post(REFRESH, {}, format="json")
    assert refreshed.status_code == 403
    assert COOKIE_NAME not in refreshed.cookies
    revoked = foreign.post(REVOKE, {}, format="json")
    assert revoked.status_code == 403
    assert COOKIE_NAME not in revoked.cookies, "a forged sign-out cannot delete the cookie"
    signed_in = sign_in(foreign)  # login CSRF: signing the victim into the attacker's account
    assert signed_in.status_code == 403
    assert COOKIE_NAME not in signed_in.cookies
    assert not BlacklistedToken.objects.exists()
    assert json_refresh(token) == 200, "the token was neither used nor revoked"


def test_an_origin_in_csrf_trusted_origins_is_accepted(dave: Any, settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com"]
    client = APIClient(headers={"Origin": "https://app.example.com", "Sec-Fetch-Site": "same-origin"})
    assert sign_in(client).status_code == 200


# --- sign-out -------------------------------------------------------------------------------------


def expect_deleted(response: Any) -> None:
    cookie = cookie_of(response)
    assert cookie.value == ""
    assert int(cookie["max-age"]) == 0
    assert cookie["path"] == COOKIE_PATH
    assert cookie["samesite"] == "Strict"


def test_sign_out_blacklists_the_cookies_token_and_deletes_the_cookie(dave: Any) -> None:
    client = page()
    token = cookie_of(sign_in(client)).value
    response = client.post(REVOKE, {}, format="json")
    assert response.status_code == 200
    assert response.json() == {}
    expect_deleted(response)
    assert json_refresh(token) == 401, "blacklisted on the server, not only forgotten by the browser"
    assert client.post(REFRESH, {}, format="json").status_code == 401


def test_sign_out_without_a_valid_cookie_still_deletes_it(dave: Any) -> None:
    client = page()
    client.cookies[COOKIE_NAME] = "not-a-token"
    response = client.post(REVOKE, {}, format="json")
    assert response.status_code == 401
    expect_deleted(response)
    response = page().post(REVOKE, {}, format="json")
    assert response.status_code == 401
    expect_deleted(response)


@pytest.mark.django_db(transaction=True)
async def test_sign_out_with_the_cookie_ends_every_socket_of_the_user(bob: Any) -> None:
    @database_sync_to_async
    def make_dave() -> Any:
        return get_user_model().objects.create_user("dave", password=PASSWORD)

    dave = await make_dave()
    client = page()
    await database_sync_to_async(sign_in)(client)
    async with connected(dave) as first, connected(dave) as second, connected(bob) as other:
        response = await database_sync_to_async(client.post)(REVOKE, {}, format="json")
        assert response.status_code == 200
        for socket in (first, second):
            await ended(socket, "logged_out")
        await other.ok("ping")
        assert await other.nothing()


# --- the JSON API is unchanged --------------------------------------------------------------------


def test_the_json_api_neither_sets_nor_reads_the_cookie(dave: Any) -> None:
    client = page()
    token = cookie_of(sign_in(client)).value
    pair = client.post("/api/v1/token/", {"username": "dave", "password": PASSWORD}, format="json")
    assert pair.status_code == 200
    assert set(pair.json()) == {"access", "refresh"}
    assert not pair.cookies
    # (A browser would not even send the cookie there: its Path.) A body-less JSON refresh is a 400 as before.
    assert client.post("/api/v1/token/refresh/", {}, format="json").status_code == 400
    rotated = client.post("/api/v1/token/refresh/", {"refresh": pair.json()["refresh"]}, format="json")
    assert rotated.status_code == 200
    assert set(rotated.json()) == {"access", "refresh"}
    assert not rotated.cookies
    assert client.post("/api/v1/token/revoke/", {}, format="json").status_code == 400
    assert json_refresh(token) == 200, "the cookie's token untouched by the JSON calls"
