"""The tail-call routers (sessions_app.routing): Channels' routing decisions and errors, with no
router frame left on a connection's stack."""

import asyncio
from typing import Any

import pytest
from asgiref.compatibility import is_double_callable
from channels.testing import WebsocketCommunicator
from django.urls import path

from project.asgi import application
from sessions_app.routing import ProtocolTypeRouter, URLRouter
from tests.utils import access_for, open_socket

pytestmark = pytest.mark.django_db(transaction=True)


def endpoint(name: str) -> Any:
    """An ASGI app that accepts and tells its name and url_route."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": f"{name} {scope['url_route']['kwargs']}"})
        await receive()

    return app


async def test_only_the_consumer_frame_stays_on_an_authenticated_connections_stack(alice: Any) -> None:
    client = await open_socket()
    try:
        await client.send({"token": access_for(alice)})
        assert (await client.recv())["state"] == "initialised"
        outer = client.ws.future.get_coro()
        # Channels' OriginValidator awaits the consumer (sessions_app.security); nothing else does.
        assert outer.cr_code.co_qualname == "OriginValidator.__call__"
        coroutine = outer.cr_await
        assert coroutine.cr_code.co_qualname == "OrderedConsumer.__call__"
        # ... and it is waiting for the client, not for an inner application.
        assert coroutine.cr_await is not None and "SessionGroupsMixin" not in str(coroutine.cr_await)
    finally:
        await client.ws.disconnect()


def test_servers_take_the_application_for_an_asgi3_single_callable() -> None:
    assert is_double_callable(application) is False  # daphne, through asgiref
    assert asyncio.iscoroutinefunction(application.__call__)  # uvicorn's check


async def test_a_websocket_path_with_no_route_is_refused_without_a_traceback(caplog: Any) -> None:
    communicator = WebsocketCommunicator(application, "/api/v1/nowhere")
    connected, _ = await communicator.connect()
    assert connected is False
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_an_http_scope_with_no_route_still_raises_as_with_channels() -> None:
    router = URLRouter([path("socket", endpoint("x"))])
    with pytest.raises(ValueError, match="No route found for path 'elsewhere'"):
        await router({"type": "http", "path": "/elsewhere"}, None, None)


async def test_a_scope_type_with_no_application_fails_inside_the_application() -> None:
    router = ProtocolTypeRouter({"websocket": endpoint("ws")})
    awaitable = router({"type": "lifespan"}, None, None)
    with pytest.raises(ValueError, match="No application configured for scope type 'lifespan'"):
        await awaitable


async def test_a_nested_router_without_a_match_lets_the_outer_router_try_its_next_route() -> None:
    router = URLRouter(
        [
            path("a/", URLRouter([path("b/<int:n>", endpoint("inner"))])),
            path("a/<slug:name>", endpoint("outer")),
        ]
    )
    for url, expected in (("/a/b/7", "inner {'n': 7}"), ("/a/c", "outer {'name': 'c'}")):
        communicator = WebsocketCommunicator(router, url)
        connected, _ = await communicator.connect()
        assert connected
        assert await communicator.receive_from() == expected
        await communicator.disconnect()


async def test_root_path_is_stripped_and_must_prefix_the_path() -> None:
    router = URLRouter([path("socket", endpoint("root"))])
    communicator = WebsocketCommunicator(router, "/prefix/socket")
    communicator.scope["root_path"] = "/prefix"
    connected, _ = await communicator.connect()
    assert connected and await communicator.receive_from() == "root {}"
    await communicator.disconnect()

    elsewhere = WebsocketCommunicator(router, "/other/socket")
    elsewhere.scope["root_path"] = "/prefix"
    with pytest.raises(ValueError, match="No route found"):
        await elsewhere.connect()  # a root_path that does not prefix the path is a server misconfiguration


async def test_an_idle_connection_does_not_hold_its_last_frame(alice: Any) -> None:
    # The token frame (or any request, up to SESSIONS_MAX_MESSAGE_BYTES) would stay referenced by
    # the consumer's loop while it waits for the next frame (issue 16: memory per idle connection).
    client = await open_socket()
    try:
        await client.send({"token": access_for(alice)})
        assert (await client.recv())["state"] == "initialised"
        consumer = client.ws.future.get_coro().cr_await
        assert consumer.cr_code.co_qualname == "OrderedConsumer.__call__"
        assert consumer.cr_frame.f_locals["message"] is None
        await client.send({"state": "ping", "data": {}, "id": 1})
        assert (await client.recv())["state"] == "ping"
        assert consumer.cr_frame.f_locals["message"] is None
    finally:
        await client.ws.disconnect()
