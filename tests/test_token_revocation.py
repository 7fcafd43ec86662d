"""Issue 11, item 5 (the tokens' side): a password change or a sign-out ends tokens, and rotation
cannot keep a sign-in alive past ``SESSIONS_LOGIN_MAX_AGE`` (sessions_app/tokens.py).

Closing the sockets already open when the password changes is not here: that is another item.
"""

import time
from typing import Any

import jwt
import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from sessions_app.conf import app_settings
from sessions_app.tokens import LoginRefreshToken
from tests.utils import connected, open_socket

PASSWORD = "correct-horse-battery-staple"
NEW_PASSWORD = "another-Pw-1618"
DAY = 86400


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def dave(db: Any) -> Any:
    return get_user_model().objects.create_user("dave", password=PASSWORD)


def obtain(username: str = "dave", password: str = PASSWORD) -> dict[str, str]:
    response = APIClient().post("/api/v1/token/", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def refresh(token: str) -> Any:
    return APIClient().post("/api/v1/token/refresh/", {"refresh": token}, format="json")


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def change_password(username: str = "dave", password: str = NEW_PASSWORD) -> None:
    user = get_user_model().objects.get(username=username)
    user.set_password(password)
    user.save()


def sign(payload: dict[str, Any]) -> str:
    """A token signed with the server's key (as SimpleJWT signs, HS256)."""
    return jwt.encode(payload, django_settings.SECRET_KEY, algorithm="HS256")


async def handshake(token: str) -> dict[str, Any]:
    client = await open_socket()
    try:
        await client.send({"token": token})
        return await client.recv()
    finally:
        await client.ws.disconnect()


# --- a password change ----------------------------------------------------------------------------


def test_after_a_password_change_the_old_refresh_token_is_refused(dave: Any) -> None:
    pair = obtain()
    change_password()
    response = refresh(pair["refresh"])
    assert response.status_code == 401
    assert "access" not in response.json()
    assert refresh(obtain(password=NEW_PASSWORD)["refresh"]).status_code == 200  # a new sign-in works


def test_after_a_password_change_a_rotated_refresh_token_is_refused_too(dave: Any) -> None:
    rotated = refresh(obtain()["refresh"]).json()
    change_password()
    assert refresh(rotated["refresh"]).status_code == 401


@pytest.mark.django_db(transaction=True)
async def test_after_a_password_change_the_old_access_token_cannot_open_or_renew_a_socket(dave: Any) -> None:
    pair = await database_sync_to_async(obtain)()
    async with connected(dave, token=pair["access"]) as client:
        await database_sync_to_async(change_password)()
        # The change itself ends the socket (sessions_app/process.py, reason password_changed) ...
        ended = await client.recv()
        assert ended["code"] == "not_authenticated" and ended["data"]["reason"] == "password_changed"
        assert await client.closed() == 4401
    # ... and the old access token opens no other.
    refused = await handshake(pair["access"])
    assert refused["code"] == "not_authenticated"
    fresh = await database_sync_to_async(obtain)(password=NEW_PASSWORD)
    async with connected(dave, token=fresh["access"]) as client:
        assert client.user["username"] == "dave"


def test_every_token_of_the_api_is_tied_to_the_password(dave: Any) -> None:
    pair = obtain()
    rotated = refresh(pair["refresh"]).json()
    for token in (*pair.values(), *rotated.values()):
        assert claims(token)["hash_password"], token


def test_a_refresh_token_without_the_password_claim_is_refused(dave: Any) -> None:
    payload = claims(obtain()["refresh"])
    del payload["hash_password"]
    assert refresh(sign(payload)).status_code == 401


# --- signing out ----------------------------------------------------------------------------------


def test_after_sign_out_neither_the_refresh_token_nor_its_predecessors_refresh(dave: Any) -> None:
    first = obtain()
    second = refresh(first["refresh"]).json()
    assert APIClient().post("/api/v1/token/revoke/", {"refresh": second["refresh"]}, format="json").status_code == 200
    assert refresh(second["refresh"]).status_code == 401
    assert refresh(first["refresh"]).status_code == 401


# --- the sign-in's maximum age --------------------------------------------------------------------


def test_rotation_keeps_the_sign_in_time_and_never_extends_past_the_maximum_age(dave: Any, settings: Any) -> None:
    settings.SESSIONS_LOGIN_MAX_AGE = 3600  # shorter than the refresh lifetime (a day)
    pair = obtain()
    auth_time = claims(pair["refresh"])["auth_time"]
    assert abs(auth_time - time.time()) < 60
    tokens = [pair]
    for _ in range(3):
        tokens.append(refresh(tokens[-1]["refresh"]).json())
    for token in (t for pair in tokens for t in pair.values()):
        assert claims(token)["auth_time"] == auth_time
        assert claims(token)["exp"] <= auth_time + 3600


def test_a_refresh_token_past_the_maximum_age_is_refused_though_not_expired(dave: Any) -> None:
    payload = claims(obtain()["refresh"])
    payload["auth_time"] -= app_settings.LOGIN_MAX_AGE + 60  # signed in a week and a minute ago
    payload["exp"] = int(time.time()) + DAY
    response = refresh(sign(payload))
    assert response.status_code == 401
    assert "access" not in response.json()


def test_a_refresh_token_without_a_sign_in_time_is_refused(dave: Any) -> None:
    # Refresh tokens made before this rule (and any not made by the token API) carry no auth_time.
    assert refresh(str(RefreshToken.for_user(dave))).status_code == 401


def test_the_maximum_age_applies_to_access_tokens_made_from_a_rotated_refresh_token(dave: Any, settings: Any) -> None:
    settings.SESSIONS_LOGIN_MAX_AGE = 120  # less than the access lifetime (five minutes)
    access = refresh(obtain()["refresh"]).json()["access"]
    assert claims(access)["exp"] <= claims(access)["auth_time"] + 120


@pytest.mark.django_db(transaction=True)
async def test_an_access_token_past_the_maximum_age_cannot_open_a_socket(dave: Any) -> None:
    token = LoginRefreshToken.for_user
    payload = claims(str((await database_sync_to_async(token)(dave)).access_token))
    payload["auth_time"] -= app_settings.LOGIN_MAX_AGE + 60  # the maximum age was lowered since
    payload["exp"] = int(time.time()) + 300
    assert (await handshake(sign(payload)))["code"] == "not_authenticated"


def test_a_refresh_token_of_a_deleted_user_is_refused_not_a_server_error(dave: Any) -> None:
    pair = obtain()
    dave.delete()
    assert refresh(pair["refresh"]).status_code == 401


# --- tokens minted with the signing key -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_an_access_token_without_the_claims_is_checked_as_simplejwt_checks_any(dave: Any) -> None:
    # What the conformance suite mints: signed with SECRET_KEY, no hash_password, no auth_time.
    minted = str(AccessToken.for_user(dave))
    payload = claims(minted)
    payload.pop("hash_password", None)
    async with connected(dave, token=sign(payload)) as client:
        assert client.user["username"] == "dave"
    expired = {**payload, "exp": int(time.time()) - 10}
    assert (await handshake(sign(expired)))["code"] == "not_authenticated"
