"""Limits found by trying to break the server: frame depth, binary size, patch amplification."""

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings

from sessions_app import protocol
from sessions_app.models import Membership
from tests.utils import access_for, connected, open_socket

pytestmark = pytest.mark.django_db(transaction=True)


def raw_delete_memberships(*, user_id: int) -> None:
    """Delete the user's memberships in SQL, as a script outside Django would (no model signal)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Membership._meta.db_table} WHERE user_id = %s", [user_id])  # noqa: S608


async def test_a_frame_nested_deeper_than_the_limit_gets_invalid_message_and_the_socket_stays_open(alice):
    deep = "[" * 200 + "]" * 200
    async with connected(alice) as client:
        for frame in (
            f'{{"state": "ping", "data": {{"a": {deep}}}, "id": 1}}',
            f'{{"state": "ping", "data": {{"a": {deep}}}, "id": 2, "n": 12345678901234567890123}}',
        ):
            await client.send_text(frame)
            error = await client.recv()
            assert error["code"] == protocol.INVALID_MESSAGE, error
        assert "server_time" in await client.ok("ping")


@pytest.mark.parametrize(
    ("levels", "extra"),
    [(200, ""), (200, ', "n": 12345678901234567890123'), (1010, ', "n": 12345678901234567890123')],
    ids=["orjson", "long digits", "past the standard library's recursion limit"],
)
async def test_a_too_deep_frame_echoes_its_id_and_state_as_every_error_does(alice, levels, extra):
    deep = "[" * levels + "]" * levels
    async with connected(alice) as client:
        for request_id in ("deep-1", 7, -(2**63)):
            frame = f'{{"state": "ping", "data": {{"a": {deep}}}, "id": {json.dumps(request_id)}{extra}}}'
            await client.send_text(frame)
            error = await client.recv()
            assert (error["code"], error["id"], error["request_state"]) == ("invalid_message", request_id, "ping")


@pytest.mark.parametrize(
    ("envelope", "echoed"),
    [
        ('"state": "ping", "id": true', {"request_state": "ping"}),
        ('"state": "no such state!", "id": "x"', {"id": "x"}),
        (f'"state": 5, "id": {2**64}', {}),
    ],
)
async def test_a_too_deep_frame_echoes_only_what_is_valid_of_its_id_and_state(alice, envelope, echoed):
    deep = "[" * 100 + "]" * 100
    async with connected(alice) as client:
        await client.send_text(f'{{{envelope}, "data": {{"a": {deep}}}}}')
        error = await client.recv()
        assert error["code"] == "invalid_message", error
        assert {key: error[key] for key in ("id", "request_state") if key in error} == echoed


async def test_a_frame_nested_past_the_parsers_limit_is_invalid_json_with_or_without_long_digits(alice):
    deep = "[" * 1100 + "]" * 1100
    async with connected(alice) as client:
        for extra in ("", ', "n": 12345678901234567890123'):
            await client.send_text(f'{{"state": "ping", "data": {{"a": {deep}}}, "id": 3{extra}}}')
            assert (await client.recv())["code"] == "invalid_json"
        assert "server_time" in await client.ok("ping")


async def test_an_oversized_binary_frame_gets_message_too_large_and_4413(alice):
    with override_settings(SESSIONS_MAX_MESSAGE_BYTES=1024):
        async with connected(alice) as client:
            await client.ws.send_to(bytes_data=b"x" * 2048)
            assert (await client.recv())["code"] == protocol.MESSAGE_TOO_LARGE
            assert await client.closed() == protocol.CLOSE_TOO_LARGE


async def test_a_patch_of_doubling_copies_is_refused_and_the_session_is_unchanged(alice):
    async with connected(alice) as client:
        snap = await client.ok("create", {"title": "dbl", "data": {"a": "x" * 10}})
        ops = [{"op": "copy", "from": "", "path": f"/k{i}"} for i in range(30)]
        reply = await client.request("patch", {"version": 0, "ops": ops})
        assert reply["code"] == protocol.INVALID_DATA, reply
        state = await client.ok("join", {"session": snap["id"]})
        assert state["version"] == 0 and state["data"] == {"a": "x" * 10}


async def test_an_inactive_users_token_is_refused_in_plain_words(alice):
    alice.is_active = False
    await database_sync_to_async(alice.save)()
    client = await open_socket()
    await client.send({"token": access_for(alice)})
    error = await client.recv()
    assert error["code"] == protocol.NOT_AUTHENTICATED
    assert "ErrorDetail" not in error["error"] and "{" not in error["error"]
    assert await client.closed() == protocol.CLOSE_AUTH


async def test_a_user_deactivated_without_a_signal_is_disconnected_within_a_heartbeat(alice):
    with override_settings(SESSIONS_PRESENCE_HEARTBEAT=0.1):
        async with connected(alice) as client:
            await client.ok("ping")
            # QuerySet.update() sends no post_save: only the heartbeat's check can notice.
            await database_sync_to_async(get_user_model().objects.filter(pk=alice.pk).update)(is_active=False)
            error = await client.recv(timeout=3)
            assert error["code"] == protocol.NOT_AUTHENTICATED
            assert await client.closed() == protocol.CLOSE_AUTH


@override_settings(SESSIONS_REBASE_MAX_CHANGES=0)
async def test_a_patch_too_far_behind_a_seen_push_conflicts_without_a_database_hop(alice, bob):
    # With SESSIONS_REBASE_MAX_CHANGES=0 no stale patch can be rebased, so one version behind is
    # too far (by default, 100 versions: tests/test_services.py has the default's case).
    async with connected(alice) as a, connected(bob) as b:
        snap = await a.ok("create", {"title": "stale", "data": {"n": 0}})
        await a.ok("invite", {"username": "bob", "role": "editor"})
        await b.ok("join", {"session": snap["id"]})
        await a.ok("patch", {"version": 0, "ops": [{"op": "replace", "path": "/n", "value": 1}]})
        assert (await b.push("patched"))["data"]["version"] == 1
        # Remove bob's membership behind the consumer's back (SQL: no signal, so no push that
        # would make the connection leave): a request that reaches the database now answers
        # not_found, so a conflict proves the stale patch never got there.
        await database_sync_to_async(raw_delete_memberships)(user_id=bob.pk)
        stale = await b.request("patch", {"version": 0, "ops": [{"op": "replace", "path": "/n", "value": 2}]})
        assert stale["code"] == protocol.CONFLICT and stale["data"] == {"version": 1}
        fresh = await b.request("patch", {"version": 1, "ops": [{"op": "replace", "path": "/n", "value": 2}]})
        assert fresh["code"] == protocol.NOT_FOUND
