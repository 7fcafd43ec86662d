"""Token lifetime on a live socket (token_expiring, token_expired, in-band authenticate) and the
REST token endpoints (obtain, rotating refresh, revoke).
"""

import datetime
import time

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from tests.utils import access_for, connected, make_user, refresh_for

PASSWORD = "correct-horse-battery-staple"
SHORT = datetime.timedelta(seconds=2)  # exp is whole seconds: 1-2 s left at the handshake


def expiry_of(token):
    """A token's ``exp`` as the protocol writes it (ISO 8601 UTC, ``Z``)."""
    moment = datetime.datetime.fromtimestamp(AccessToken(token)["exp"], tz=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def seconds_left(token):
    return AccessToken(token)["exp"] - time.time()


# --- expiry on a live socket ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@override_settings(SESSIONS_TOKEN_EXPIRY_WARNING=0.3)
async def test_a_token_expiring_push_comes_shortly_before_token_expired_and_close_4401(alice):
    token = access_for(alice, lifetime=SHORT)
    exp = AccessToken(token)["exp"]
    async with connected(alice, token=token) as client:
        push = await client.push("token_expiring", timeout=3)
        warned_at = time.time()
        assert push == {"state": "token_expiring", "data": {"token_expires_at": expiry_of(token)}}
        assert warned_at >= exp - 0.4  # not before SESSIONS_TOKEN_EXPIRY_WARNING (plus timer slack)
        error = await client.recv(timeout=1)
        expired_at = time.time()
        assert (error["state"], error["code"]) == ("error", "token_expired")
        assert isinstance(error["error"], str)
        assert "id" not in error
        assert expired_at >= exp - 0.05
        assert await client.closed() == 4401
        assert client.pushes == []


@pytest.mark.django_db(transaction=True)
async def test_a_token_closer_to_expiry_than_the_warning_is_warned_at_once(alice):
    token = access_for(alice, lifetime=SHORT)  # the default warning is 30 s
    async with connected(alice, token=token) as client:
        push = await client.push("token_expiring", timeout=0.5)
        assert push["data"] == {"token_expires_at": expiry_of(token)}


@pytest.mark.django_db(transaction=True)
@override_settings(SESSIONS_TOKEN_EXPIRY_WARNING=0.3)
async def test_authenticate_after_the_warning_renews_the_token_and_the_socket_stays_open(alice):
    token = access_for(alice, lifetime=SHORT)
    async with connected(alice, token=token) as client:
        await client.push("token_expiring", timeout=3)
        fresh = access_for(alice)
        reply = await client.request("authenticate", {"token": fresh})
        assert reply == {"state": "authenticate", "data": {"token_expires_at": expiry_of(fresh)}, "id": reply["id"]}
        assert expiry_of(fresh) > expiry_of(token)
        assert await client.nothing(seconds_left(token) + 0.3)  # past the old expiry: no token_expired
        await client.ok("ping")
        assert client.pushes == []


@pytest.mark.django_db(transaction=True)
@override_settings(SESSIONS_TOKEN_EXPIRY_WARNING=0.3)
async def test_authenticate_with_a_shorter_token_brings_the_warning_and_the_expiry_forward(alice):
    async with connected(alice) as client:
        shorter = access_for(alice, lifetime=SHORT)
        assert (await client.ok("authenticate", {"token": shorter}))["token_expires_at"] == expiry_of(shorter)
        push = await client.push("token_expiring", timeout=3)
        assert push["data"] == {"token_expires_at": expiry_of(shorter)}
        assert (await client.recv(timeout=1))["code"] == "token_expired"
        assert await client.closed() == 4401


@pytest.mark.django_db(transaction=True)
async def test_authenticate_echoes_the_request_id(alice):
    async with connected(alice) as client:
        await client.send({"state": "authenticate", "data": {"token": access_for(alice)}, "id": 0})
        reply = await client.recv()
        assert (reply["state"], reply["id"]) == ("authenticate", 0)


# --- authenticate refused: not_authenticated and close 4401 -----------------------------------------------


async def refused_renewal(client, token):
    await client.send({"state": "authenticate", "data": {"token": token}, "id": "renew"})
    error = await client.recv()
    assert error["state"] == "error", error
    assert error["code"] == "not_authenticated"
    assert error["id"] == "renew"
    assert error["request_state"] == "authenticate"
    assert isinstance(error["error"], str)
    assert token not in error["error"]
    assert await client.closed() == 4401


@pytest.mark.django_db(transaction=True)
async def test_authenticate_with_another_users_token_is_refused(alice, bob):
    async with connected(alice) as client:
        await refused_renewal(client, access_for(bob))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("token", ["garbage", "a.b.c", "Bearer x", "x" * 500])
async def test_authenticate_with_a_garbage_token_is_refused(alice, token):
    async with connected(alice) as client:
        await refused_renewal(client, token)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("data", [{}, {"token": ""}, {"token": 5}, {"token": None}, {"access": "x"}])
async def test_authenticate_without_a_token_string_gets_invalid_data_and_stays_open(alice, data):
    async with connected(alice) as client:
        reply = await client.request("authenticate", data)
        assert (reply["state"], reply["code"]) == ("error", "invalid_data")
        assert list(reply["errors"]) == ["token"]
        await client.ok("ping")


@pytest.mark.django_db(transaction=True)
async def test_authenticate_with_an_expired_token_is_refused(alice):
    async with connected(alice) as client:
        await refused_renewal(client, access_for(alice, lifetime=datetime.timedelta(seconds=-5)))


@pytest.mark.django_db(transaction=True)
async def test_authenticate_with_a_refresh_token_is_refused(alice):
    refresh = await database_sync_to_async(refresh_for)(alice)
    async with connected(alice) as client:
        await refused_renewal(client, refresh)


@pytest.mark.django_db(transaction=True)
async def test_authenticate_with_a_token_of_a_user_deactivated_meanwhile_is_refused(alice):
    async with connected(alice) as client:
        fresh = access_for(alice)
        await database_sync_to_async(get_user_model().objects.filter(pk=alice.pk).update)(is_active=False)
        await refused_renewal(client, fresh)


# --- REST token endpoints ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Password hashing at full strength costs about a second a login; these tests need none."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def dave(db):
    return get_user_model().objects.create_user("dave", password=PASSWORD)


@pytest.fixture
def api():
    return APIClient()


def obtain(api, username="dave", password=PASSWORD):
    return api.post("/api/v1/token/", {"username": username, "password": password}, format="json")


def test_obtaining_a_token_pair_with_the_right_password(api, dave):
    response = obtain(api)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    access = AccessToken(body["access"])
    assert str(access["user_id"]) == str(dave.pk)
    assert access["token_type"] == "access"


@pytest.mark.parametrize(("username", "password"), [("dave", "wrong"), ("nobody", PASSWORD), ("dave", ""), ("", "")])
def test_obtaining_a_token_with_wrong_credentials_fails(api, dave, username, password):
    response = obtain(api, username, password)
    assert response.status_code in {400, 401}
    assert "access" not in response.json()


def test_an_inactive_user_cannot_obtain_a_token(api, dave):
    dave.is_active = False
    dave.save()
    assert obtain(api).status_code == 401


def test_refreshing_rotates_the_refresh_token(api, dave):
    first = obtain(api).json()
    response = api.post("/api/v1/token/refresh/", {"refresh": first["refresh"]}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh"}
    assert body["refresh"] != first["refresh"]
    assert AccessToken(body["access"])["token_type"] == "access"


def test_a_rotated_refresh_token_cannot_be_used_again(api, dave):
    first = obtain(api).json()
    second = api.post("/api/v1/token/refresh/", {"refresh": first["refresh"]}, format="json").json()
    reused = api.post("/api/v1/token/refresh/", {"refresh": first["refresh"]}, format="json")
    assert reused.status_code == 401
    assert "access" not in reused.json()
    again = api.post("/api/v1/token/refresh/", {"refresh": second["refresh"]}, format="json")
    assert again.status_code == 200


def test_an_access_token_cannot_be_used_to_refresh(api, dave):
    first = obtain(api).json()
    response = api.post("/api/v1/token/refresh/", {"refresh": first["access"]}, format="json")
    assert response.status_code == 401


def test_after_revoke_the_refresh_token_cannot_be_used(api, dave):
    pair = obtain(api).json()
    revoked = api.post("/api/v1/token/revoke/", {"refresh": pair["refresh"]}, format="json")
    assert revoked.status_code == 200
    response = api.post("/api/v1/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    assert response.status_code == 401
    assert "access" not in response.json()


def test_revoking_twice_fails_the_second_time(api, dave):
    pair = obtain(api).json()
    assert api.post("/api/v1/token/revoke/", {"refresh": pair["refresh"]}, format="json").status_code == 200
    assert api.post("/api/v1/token/revoke/", {"refresh": pair["refresh"]}, format="json").status_code == 401


def test_revoking_a_garbage_token_fails(api, dave):
    assert api.post("/api/v1/token/revoke/", {"refresh": "garbage"}, format="json").status_code == 401


@pytest.mark.django_db(transaction=True)
async def test_an_access_token_from_the_rest_api_opens_the_socket_and_a_refreshed_one_renews_it():
    await database_sync_to_async(get_user_model().objects.create_user)("erin", password=PASSWORD)
    api = APIClient()
    pair = (await database_sync_to_async(obtain)(api, "erin")).json()
    async with connected(await make_user("erin"), token=pair["access"]) as client:
        assert client.user["username"] == "erin"
        refreshed = await database_sync_to_async(api.post)(
            "/api/v1/token/refresh/", {"refresh": pair["refresh"]}, format="json"
        )
        token = refreshed.json()["access"]
        assert (await client.ok("authenticate", {"token": token}))["token_expires_at"] == expiry_of(token)
        await client.ok("ping")
