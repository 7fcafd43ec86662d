"""Credentials that end: a password change, a sign-out (token revoke) or a deactivation closes the
user's live sockets with 4401 at once, on every process (issue 11 item 5)."""

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from sessions_app import protocol
from tests.utils import connected, refresh_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


async def ended(client: Any, reason: str) -> None:
    """The socket gets ``not_authenticated`` with ``data.reason`` (after any pushes) and closes 4401."""
    frame = await client.recv()
    while frame["state"] != "error":
        frame = await client.recv()
    assert (frame["state"], frame["code"], frame.get("data")) == ("error", "not_authenticated", {"reason": reason})
    assert await client.closed() == protocol.CLOSE_AUTH


async def test_a_password_change_closes_every_socket_of_that_user_with_4401(alice, bob) -> None:
    async with connected(alice) as first, connected(alice) as second, connected(bob) as other:
        await first.ok("create", {"title": "Open"})

        @database_sync_to_async
        def change_password() -> None:
            alice.set_password("a-new-Password-1")
            alice.save()

        await change_password()
        for client in (first, second):
            await ended(client, "password_changed")
        await other.ok("ping")
        assert await other.nothing()


async def test_a_password_hash_upgrade_at_sign_in_is_not_a_password_change(alice, settings: Any) -> None:
    @database_sync_to_async
    def set_md5_password() -> None:
        alice.set_password("same-Password-1")
        alice.save()

    await set_md5_password()
    async with connected(alice) as client:
        # A stronger hasher first: check_password re-hashes and saves (Django's setter), with the
        # same password.
        settings.PASSWORD_HASHERS = [
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
            "django.contrib.auth.hashers.MD5PasswordHasher",
        ]
        user = await get_user_model().objects.aget(pk=alice.pk)
        assert await database_sync_to_async(user.check_password)("same-Password-1")
        assert (await get_user_model().objects.aget(pk=alice.pk)).password.startswith("pbkdf2_")
        assert await client.nothing()
        await client.ok("ping")


async def test_saving_a_user_without_a_new_password_leaves_the_sockets_open(alice) -> None:
    async with connected(alice) as client:
        alice.first_name = "Alice"
        await database_sync_to_async(alice.save)()
        assert await client.nothing()


async def test_revoking_a_refresh_token_closes_that_users_sockets_with_4401(alice, bob) -> None:
    refresh = await database_sync_to_async(refresh_for)(alice)
    async with connected(alice) as client, connected(bob) as other:
        response = await database_sync_to_async(APIClient().post)(
            "/api/v1/token/revoke/", {"refresh": refresh}, format="json"
        )
        assert response.status_code == 200
        await ended(client, "logged_out")
        assert await BlacklistedToken.objects.filter(token__user=alice).aexists()
        await other.ok("ping")
        assert await other.nothing()


async def test_a_refused_revoke_closes_nothing(alice) -> None:
    refresh = await database_sync_to_async(refresh_for)(alice)
    revoke = database_sync_to_async(lambda token: APIClient().post("/api/v1/token/revoke/", {"refresh": token}))
    async with connected(alice) as client:
        assert (await revoke("not-a-token")).status_code == 401
        assert await client.nothing()
        assert (await revoke(refresh)).status_code == 200
        await ended(client, "logged_out")
    async with connected(alice) as again:
        # Already blacklisted: refused, and the new socket stays open.
        assert (await revoke(refresh)).status_code == 401
        assert await again.nothing()


async def test_a_token_refresh_with_rotation_closes_nothing(alice) -> None:
    refresh = await database_sync_to_async(refresh_for)(alice)
    async with connected(alice) as client:
        response = await database_sync_to_async(APIClient().post)(
            "/api/v1/token/refresh/", {"refresh": refresh}, format="json"
        )
        assert response.status_code == 200 and response.json()["refresh"] != refresh
        assert await client.nothing()


async def test_deactivation_closes_with_the_reason_deactivated(alice) -> None:
    async with connected(alice) as client:
        alice.is_active = False
        await database_sync_to_async(alice.save)()
        await ended(client, "deactivated")
