"""Issue 11, item 2: sign-in does not stall the sockets (sessions_app/passwords.py).

Password hashes run in a small pool of low-priority threads, never in the thread that runs the
sockets' database work nor all at once: checked in process through the ASGI application, and on a
live daphne under sixteen concurrent bad logins (threads and concurrency as recorded by
tests/apps/password_probe.py; the latency itself is measured by bench/login_stall.py, not here).
"""

import asyncio
import os
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model, hashers
from django.test import AsyncClient

from sessions_app import passwords
from tests import live, wsclient
from tests.utils import connected

PASSWORD = "correct-horse-battery-staple"
LINUX = hasattr(os, "getpriority") and os.uname().sysname == "Linux"


def nice_of(native_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, native_id)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each call of Django's own Argon2 and PBKDF2 ``encode`` and ``verify``: the thread it ran in."""
    calls: list[dict[str, Any]] = []

    def probe(name: str, work: Any) -> Any:
        def probed(self: Any, *args: Any, **kwargs: Any) -> Any:
            thread = threading.current_thread()
            calls.append(
                {"work": name, "ident": thread.ident, "name": thread.name, "nice": nice_of(threading.get_native_id())}
            )
            return work(self, *args, **kwargs)

        return probed

    for hasher in (hashers.Argon2PasswordHasher, hashers.PBKDF2PasswordHasher):
        for name in ("encode", "verify"):
            monkeypatch.setattr(hasher, name, probe(f"{hasher.algorithm}.{name}", getattr(hasher, name)))
    return calls


def assert_pooled(calls: list[dict[str, Any]], *not_in: Any) -> None:
    """Every call ran in a password-hashing thread, at a lower priority than this one on Linux."""
    assert calls
    for call in calls:
        assert call["name"].startswith(passwords.THREAD_NAME_PREFIX), call
        assert call["ident"] not in not_in, call
        if LINUX:
            assert call["nice"] > nice_of(threading.get_native_id()), call


async def sign_in(username: str, password: str) -> Any:
    return await AsyncClient().post(
        "/api/v1/token/", {"username": username, "password": password}, content_type="application/json"
    )


def test_the_default_hasher_is_djangos_argon2_run_in_the_pool() -> None:
    hasher = hashers.get_hasher("default")
    assert isinstance(hasher, hashers.Argon2PasswordHasher) and isinstance(hasher, passwords.PooledHasherMixin)
    encoded = hashers.make_password(PASSWORD)
    assert encoded.startswith("argon2$argon2id$")
    # The same hash format as Django's own class: either reads the other's hashes.
    assert hashers.Argon2PasswordHasher().verify(PASSWORD, encoded)
    assert hasher.verify(PASSWORD, hashers.Argon2PasswordHasher().encode(PASSWORD, hasher.salt()))


@pytest.mark.django_db(transaction=True)
async def test_a_sign_in_hashes_in_a_low_priority_pool_thread_not_the_database_thread(
    recorded: list[dict[str, Any]],
) -> None:
    await database_sync_to_async(get_user_model().objects.create_user)("dave", password=PASSWORD)
    recorded.clear()
    assert (await sign_in("dave", "not-the-password")).status_code == 401
    assert (await sign_in("dave", PASSWORD)).status_code == 200
    assert (await sign_in("nobody", PASSWORD)).status_code == 401  # unknown user: a dummy hash, also pooled
    assert [call["work"] for call in recorded] == ["argon2.verify", "argon2.verify", "argon2.encode"]
    database_thread = await database_sync_to_async(threading.get_ident)()
    assert_pooled(recorded, database_thread, threading.get_ident())


@pytest.mark.django_db(transaction=True)
async def test_a_pbkdf2_hash_is_upgraded_to_argon2_at_sign_in_and_its_tokens_open_the_socket(
    recorded: list[dict[str, Any]],
) -> None:
    encoded = await database_sync_to_async(hashers.make_password)(PASSWORD, hasher="pbkdf2_sha256")
    user = await database_sync_to_async(get_user_model().objects.create)(username="erin", password=encoded)
    recorded.clear()
    response = await sign_in("erin", PASSWORD)
    assert response.status_code == 200
    await database_sync_to_async(user.refresh_from_db)()
    assert user.password.startswith("argon2$")
    # (PBKDF2 verifies by encoding again, in the same pool thread.)
    assert [call["work"] for call in recorded] == ["pbkdf2_sha256.verify", "pbkdf2_sha256.encode", "argon2.encode"]
    assert_pooled(recorded, await database_sync_to_async(threading.get_ident)())
    async with connected(user, token=response.json()["access"]) as client:
        assert client.user["username"] == "erin"


def test_in_pool_from_a_pool_thread_runs_in_place() -> None:
    # A hasher that hashes again (Django's fake runtime for unusable passwords) must not wait for
    # a pool thread while holding one.
    def nested() -> str:
        return passwords.in_pool(lambda: threading.current_thread().name)

    with ThreadPoolExecutor(max_workers=4 * passwords.HASH_THREADS) as callers:
        names = list(callers.map(lambda _: passwords.in_pool(nested), range(8 * passwords.HASH_THREADS)))
    assert all(name.startswith(passwords.THREAD_NAME_PREFIX) for name in names)


# --- a live daphne under 16 concurrent bad logins -----------------------------------------------


def bad_login(url: str, n: int) -> int:
    body = f'{{"username": "nobody{n}", "password": "wrong"}}'.encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url + "/api/v1/token/", data=body, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback test server
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
async def test_sixteen_concurrent_bad_logins_hash_a_few_at_a_time_at_low_priority_beside_the_sockets(tmp_path):
    with live.processes(tmp_path) as started:
        server = started.daphne(
            started.sqlite(), application="tests.apps.password_probe:application", SESSIONS_LOGIN_FAILURE_LIMIT=1000
        )
        async with wsclient.clients() as opened:
            opened.append(await wsclient.login(server.ws, server.token("alice")))
            with ThreadPoolExecutor(max_workers=16) as flood:
                logins = [asyncio.wrap_future(flood.submit(bad_login, server.http, n)) for n in range(32)]
                while not all(login.done() for login in logins):
                    await opened[0].ok("list")  # database work on the socket meanwhile: it is answered
                    await asyncio.wait(logins, timeout=0.05)  # (within the socket's rate limit)
            assert [login.result() for login in logins] == [401] * 32
        status, probe = server.get("/probe")
    assert status == 200
    assert len(probe["hashes"]) >= 33  # alice's sign-in, and a dummy hash for each unknown username
    assert 1 <= probe["max_concurrent"] <= passwords.HASH_THREADS, probe["max_concurrent"]
    database_threads = {thread["id"]: thread["nice"] for thread in probe["database_threads"]}
    assert database_threads
    for thread in probe["hashes"]:
        assert thread["name"].startswith(passwords.THREAD_NAME_PREFIX), thread
        assert thread["id"] not in database_threads, thread
        if LINUX:
            assert thread["nice"] > max(database_threads.values()), thread
