"""Issue 5, item 10: ``GET /healthz`` reports the database and the channel layer, 503 when one is
down; issue 11, item 1: and when the database thread every socket shares is stuck."""

import asyncio
import json
import signal
import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.test import AsyncClient

from project.asgi import application
from sessions_app import health
from tests import live, wsclient


def assert_component_ok(component):
    assert component["ok"] is True, component
    assert isinstance(component["ms"], float | int)
    assert 0 <= component["ms"] < 2000


def assert_component_down(component):
    assert component["ok"] is False, component
    assert isinstance(component["error"], str)
    assert component["error"]


@pytest.mark.django_db(transaction=True)
async def test_healthz_answers_200_with_the_database_and_the_in_memory_layer_ok():
    response = await AsyncClient().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert_component_ok(body["database"])
    assert_component_ok(body["channel_layer"])


async def healthz_through_the_asgi_application():
    """``GET /healthz`` through ``project.asgi.application``, as daphne serves it (Django's ASGI
    handler gives the request a thread of its own): ``(status, body)``."""
    response = await HttpCommunicator(application, "GET", "/healthz", headers=[(b"host", b"127.0.0.1")]).get_response(
        timeout=10
    )
    return response["status"], json.loads(response["body"])


@pytest.mark.django_db(transaction=True)
async def test_healthz_answers_503_while_the_database_thread_the_sockets_share_is_stuck(monkeypatch):
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.5)
    status, body = await healthz_through_the_asgi_application()
    assert status == 200, body

    # A database call of a socket that does not return: every other socket's database work waits.
    release = threading.Event()
    stuck = asyncio.ensure_future(database_sync_to_async(release.wait)(20))
    try:
        for _ in range(3):  # again and again while it lasts, without queueing a ping per check
            status, body = await healthz_through_the_asgi_application()
            assert status == 503, body
            assert body["status"] == "unavailable"
            assert body["database"] == {"ok": False, "error": "TimeoutError"}
            assert_component_ok(body["channel_layer"])
    finally:
        release.set()
        await stuck
    status, body = await healthz_through_the_asgi_application()
    assert status == 200, body
    assert_component_ok(body["database"])


async def test_healthz_answers_503_when_the_database_cannot_be_reached(started):
    # A PostgreSQL URL on a port where nothing listens: the process starts, the database is down.
    port = live.free_port()
    server = started.daphne(f"postgres://postgres@127.0.0.1:{port}/interactive_nowhere")
    status, body = server.get("/healthz")
    assert status == 503, body
    assert body["status"] == "unavailable"
    assert_component_down(body["database"])
    assert_component_ok(body["channel_layer"])
    assert "Exception inside application" not in server.log()


@pytest.mark.redis
@pytest.mark.slow
async def test_healthz_follows_the_redis_channel_layer_down_and_back(started):
    redis = started.redis()
    server = started.daphne(started.sqlite(), redis.url)
    status, body = server.get("/healthz")
    assert status == 200, body
    assert_component_ok(body["database"])
    assert_component_ok(body["channel_layer"])

    async with wsclient.clients() as opened:
        # With sockets receiving from the layer (joined to a session), the check still gets its
        # own message back: the health channel must not wait behind the consumers' receive.
        alice = await wsclient.login(server.ws, server.token("alice"))
        opened.append(alice)
        await alice.ok("create", {"title": "health", "data": {}})
        for _ in range(3):
            status, body = server.get("/healthz")
            assert status == 200, body
            assert_component_ok(body["channel_layer"])

        redis.stop(signal.SIGKILL)
        status, body = server.get("/healthz")
        assert status == 503, body
        assert body["status"] == "unavailable"
        assert_component_ok(body["database"])
        assert_component_down(body["channel_layer"])

        redis.start()
        status, body = live.wait_until(lambda: _ok(server.get("/healthz")), 10, "healthz to recover")
        assert_component_ok(body["channel_layer"])
        assert "server_time" in await alice.ok("ping")


def _ok(answer):
    return answer if answer[0] == 200 else None
