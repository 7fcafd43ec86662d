"""The authentication handshake, the origin policy, the auth deadline and the connection limit
(protocol sections 1, 2 and 6), through ``project.asgi.application``.
"""

import datetime
import json
import logging

import jwt
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken

from project.asgi import application
from tests.utils import PATH, access_for, connected, make_user, open_socket, refresh_for

pytestmark = pytest.mark.django_db(transaction=True)


async def refused(client, code="not_authenticated", close=4401, *, disconnect=True):
    """The server answers with one error frame of ``code``, then closes with ``close``.

    The client then disconnects, unless ``disconnect`` is false (the test goes on talking).
    """
    frame = await client.recv()
    assert frame["state"] == "error", frame
    assert frame["code"] == code, frame
    assert isinstance(frame["error"], str)
    assert frame["error"]
    assert await client.closed() == close
    assert client.pushes == []
    if disconnect:
        await client.ws.disconnect()
    return frame


async def handshake_with(first):
    """Open a socket, send ``first`` as JSON, return the client."""
    client = await open_socket()
    await client.send(first)
    return client


# --- success ---------------------------------------------------------------------------------------


async def test_a_valid_access_token_initialises_the_connection_with_user_protocol_and_expiry(alice):
    token = access_for(alice)
    client = await handshake_with({"token": token})
    try:
        frame = await client.recv()
        assert frame["state"] == "initialised"
        assert set(frame) == {"state", "data"}
        assert frame["data"]["user"] == {"id": alice.pk, "username": "alice"}
        assert frame["data"]["protocol"] == 1
        expires_at = frame["data"]["token_expires_at"]
        assert expires_at.endswith("Z")
        exp = datetime.datetime.fromisoformat(expires_at)
        assert exp == datetime.datetime.fromtimestamp(AccessToken(token)["exp"], tz=datetime.UTC)
        assert await client.nothing()
        assert (await client.ok("ping"))["server_time"].endswith("Z")
    finally:
        await client.ws.disconnect()


async def test_two_users_each_get_their_own_identity(alice, bob):
    async with connected(alice) as first, connected(bob) as second:
        assert first.user == {"id": alice.pk, "username": "alice"}
        assert second.user == {"id": bob.pk, "username": "bob"}


# --- failures: each ends with not_authenticated and close 4401 ------------------------------------------


async def test_a_refresh_token_is_refused(alice):
    await refused(await handshake_with({"token": await database_sync_to_async(refresh_for)(alice)}))


async def test_an_expired_token_is_refused(alice):
    await refused(await handshake_with({"token": access_for(alice, lifetime=datetime.timedelta(seconds=-5))}))


async def test_a_token_signed_with_another_key_is_refused(alice):
    payload = dict(AccessToken.for_user(alice).payload)
    forged = jwt.encode(payload, "not-the-server-key-not-the-server-key", algorithm="HS256")
    await refused(await handshake_with({"token": forged}))


async def test_a_token_with_an_unsigned_algorithm_is_refused(alice):
    payload = dict(AccessToken.for_user(alice).payload)
    unsigned = jwt.encode(payload, None, algorithm="none")
    await refused(await handshake_with({"token": unsigned}))


async def test_a_token_of_an_unknown_user_is_refused(alice):
    token = AccessToken.for_user(alice)
    token["user_id"] = alice.pk + 1000
    await refused(await handshake_with({"token": str(token)}))


async def test_a_token_of_an_inactive_user_is_refused():
    zed = await make_user("zed", active=False)
    await refused(await handshake_with({"token": access_for(zed)}))


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "Bearer x"])
async def test_a_malformed_token_is_refused(token):
    await refused(await handshake_with({"token": token}))


async def test_a_bearer_prefixed_token_is_refused(alice):
    await refused(await handshake_with({"token": f"Bearer {access_for(alice)}"}))


@pytest.mark.parametrize(
    "shape",
    [
        lambda token: {},
        lambda token: {"access": token},
        lambda token: {"Token": token},
        lambda token: {"data": {"token": token}},
    ],
    ids=["empty", "access-key", "capitalised-key", "nested-in-data"],
)
async def test_a_first_frame_without_a_token_key_is_refused(alice, shape):
    await refused(await handshake_with(shape(access_for(alice))))


@pytest.mark.parametrize("token", [None, 123, True, ["x"], {"token": "x"}])
async def test_a_token_that_is_not_a_string_is_refused(token):
    await refused(await handshake_with({"token": token}))


async def test_a_token_inside_a_list_is_refused(alice):
    await refused(await handshake_with([{"token": access_for(alice)}]))


async def test_a_binary_first_frame_is_refused(alice):
    client = await open_socket()
    await client.ws.send_to(bytes_data=json.dumps({"token": access_for(alice)}).encode())
    await refused(client)


async def test_an_empty_first_frame_is_refused():
    client = await open_socket()
    await client.ws.send_input({"type": "websocket.receive", "text": ""})
    await refused(client)


@pytest.mark.parametrize("text", ["{", "token", '{"token": NaN}', "\x00"])
async def test_a_first_frame_that_is_not_json_is_refused(text):
    client = await open_socket()
    await client.send_text(text)
    await refused(client)


async def test_a_request_before_the_handshake_is_refused():
    client = await open_socket()
    await client.send({"state": "ping", "id": "r1"})
    await refused(client)


async def test_an_authenticate_request_before_the_handshake_is_refused(alice):
    client = await open_socket()
    await client.send({"state": "authenticate", "data": {"token": access_for(alice)}})
    await refused(client)


@override_settings(SESSIONS_MAX_MESSAGE_BYTES=1024)
async def test_an_oversized_first_frame_is_refused_as_too_large(alice):
    client = await open_socket()
    await client.send({"token": access_for(alice), "pad": "x" * 1100})
    await refused(client, "message_too_large", 4413)


async def test_a_refused_handshake_never_echoes_the_token(alice):
    token = await database_sync_to_async(refresh_for)(alice)
    frame = await refused(await handshake_with({"token": token}))
    assert token not in frame["error"]
    assert token.split(".")[1] not in str(frame)


async def test_frames_after_a_refused_handshake_get_no_answer(alice):
    client = await handshake_with({"token": "nope"})
    await refused(client, disconnect=False)
    await client.send({"token": access_for(alice)})
    assert await client.nothing()
    await client.ws.disconnect()


# --- the token never travels in the URL ------------------------------------------------------------------


async def test_a_token_in_the_query_string_is_ignored(alice, caplog):
    token = access_for(alice)
    caplog.set_level(logging.DEBUG)
    client = await open_socket(path=f"{PATH}?token={token}")
    await client.send({"state": "ping"})
    await refused(client)
    assert token not in caplog.text


async def test_a_token_in_the_query_string_does_not_stop_the_auth_deadline(alice):
    with override_settings(SESSIONS_AUTH_TIMEOUT=0.3):
        client = await open_socket(path=f"{PATH}?token={access_for(alice)}")
        assert await client.nothing(0.1)
        await refused(client, "auth_timeout", 4408)


# --- origin ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [b"http://evil.example", b"https://localhost.evil.example", b"http://evil.example:8000", b"null"],
)
async def test_a_foreign_origin_is_refused_before_the_upgrade(origin):
    communicator = WebsocketCommunicator(application, PATH, headers=[(b"origin", origin)])
    accepted, code = await communicator.connect()
    assert accepted is False
    assert code == 1000  # Channels' WebsocketDenier closes before accept; daphne answers HTTP 403
    await communicator.disconnect()


@pytest.mark.parametrize(
    "origin", [b"http://localhost:8000", b"http://127.0.0.1:8000", b"https://localhost", b"http://[::1]:8000"]
)
async def test_an_origin_of_an_allowed_host_is_accepted(alice, origin):
    client = await open_socket(headers=[(b"origin", origin)])
    try:
        await client.send({"token": access_for(alice)})
        assert (await client.recv())["state"] == "initialised"
    finally:
        await client.ws.disconnect()


async def test_a_handshake_without_origin_is_accepted(alice):
    async with connected(alice) as client:
        await client.ok("ping")


# --- the auth deadline -----------------------------------------------------------------------------------


@override_settings(SESSIONS_AUTH_TIMEOUT=0.3)
async def test_no_handshake_in_time_gets_auth_timeout_and_close_4408():
    client = await open_socket()
    assert await client.nothing(0.15)
    await refused(client, "auth_timeout", 4408)


@override_settings(SESSIONS_AUTH_TIMEOUT=0.3)
async def test_a_handshake_in_time_cancels_the_auth_deadline(alice):
    async with connected(alice) as client:
        assert await client.nothing(0.5)
        await client.ok("ping")


@override_settings(SESSIONS_AUTH_TIMEOUT=0.3)
async def test_after_the_auth_timeout_a_token_gets_no_answer(alice):
    client = await open_socket()
    await refused(client, "auth_timeout", 4408, disconnect=False)
    await client.send({"token": access_for(alice)})
    assert await client.nothing()
    await client.ws.disconnect()


# --- connection limit ------------------------------------------------------------------------------------


@override_settings(SESSIONS_MAX_CONNECTIONS_PER_USER=2)
async def test_a_connection_over_the_per_user_limit_gets_too_many_connections_and_close_4429(alice, bob):
    async with connected(alice) as first, connected(alice) as second:
        third = await handshake_with({"token": access_for(alice)})
        frame = await refused(third, "too_many_connections", 4429)
        assert frame["data"] == {"limit": 2}
        await first.ok("ping")
        await second.ok("ping")
        async with connected(bob) as other:
            await other.ok("ping")


@override_settings(SESSIONS_MAX_CONNECTIONS_PER_USER=2)
async def test_a_closed_connection_frees_its_place_under_the_limit(alice):
    async with connected(alice) as first:
        async with connected(alice):
            pass
        async with connected(alice) as again:
            await again.ok("ping")
        await first.ok("ping")


@override_settings(SESSIONS_MAX_CONNECTIONS_PER_USER=2)
async def test_refused_handshakes_do_not_use_up_the_limit(alice):
    for _ in range(3):
        await refused(await handshake_with({"token": "bad"}))
    async with connected(alice) as first, connected(alice) as second:
        await first.ok("ping")
        await second.ok("ping")


# --- deactivation ----------------------------------------------------------------------------------------


async def test_deactivating_a_user_closes_their_live_socket_with_4401(alice, bob):
    async with connected(alice) as client, connected(bob) as other:
        await client.ok("ping")
        alice.is_active = False
        await database_sync_to_async(alice.save)()
        frame = await client.recv()
        assert (frame["state"], frame["code"]) == ("error", "not_authenticated")
        assert await client.closed() == 4401
        await other.ok("ping")
        assert await other.nothing()


async def test_deleting_a_user_closes_their_live_socket_with_4401(alice):
    async with connected(alice) as client:
        await database_sync_to_async(alice.delete)()
        frame = await client.recv()
        assert (frame["state"], frame["code"]) == ("error", "not_authenticated")
        assert await client.closed() == 4401


async def test_saving_an_active_user_leaves_their_socket_open(alice):
    async with connected(alice) as client:
        alice.first_name = "Alice"
        await database_sync_to_async(alice.save)()
        assert await client.nothing()
        await client.ok("ping")
