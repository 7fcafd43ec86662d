"""WebSocket routes, and Channels' routers in a form that does not stay on every connection's stack.

Channels' ``ProtocolTypeRouter``, ``OriginValidator``, ``URLRouter`` and ``as_asgi`` are coroutines
that ``await`` the application they pick, so each keeps a suspended frame, and the scope it was
given, for the whole life of every connection: about 1.1 KiB per idle socket (tracemalloc, with
``tests/test_routing.py`` checking that only the consumer's frame remains). The classes here pick
the same way, with the same errors, and *return* the picked application's coroutine instead of
awaiting it: a tail call. They are ASGI 3 single callables (calling one returns an awaitable),
marked as such for servers that look (asgiref's ``_asgi_single_callable`` hint, and
``markcoroutinefunction`` for uvicorn's check).

An error Channels raises inside its coroutine is raised inside the returned coroutine here too, so
servers report it the same way; a nested URLRouter's Resolver404 is raised at once, where the outer
URLRouter catches it to try its next route, as in Channels. One deliberate difference: a WebSocket
handshake to a path with no route is refused (HTTP 403) instead of raising ValueError, which made a
traceback in the log for every such request anyone cared to send. The origin check stays Channels'
``OriginValidator`` itself (sessions_app.security), which awaits the consumer.
"""

import logging
from typing import Any, NoReturn

from asgiref.sync import markcoroutinefunction
from channels import routing
from channels.security.websocket import WebsocketDenier
from django.urls import path
from django.urls.exceptions import Resolver404

from .consumers import SessionConsumer

logger = logging.getLogger(__name__)


async def _raise(exc: Exception) -> NoReturn:
    raise exc


class ProtocolTypeRouter(routing.ProtocolTypeRouter):
    """Channels' ProtocolTypeRouter (one application per scope ``type``), as a tail call."""

    _asgi_single_callable = True

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        application = self.application_mapping.get(scope["type"])
        if application is None:
            return _raise(ValueError(f"No application configured for scope type {scope['type']!r}"))
        return application(scope, receive, send)


class URLRouter(routing.URLRouter):
    """Channels' URLRouter (Django ``path``/``re_path`` routes, ``url_route`` in the scope), as a tail call."""

    _asgi_single_callable = True

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        nested = "path_remaining" in scope
        route_path = scope.get("path_remaining", scope.get("path"))
        if route_path is None:
            return _raise(ValueError("No 'path' key in connection scope, cannot route URLs"))
        if not nested:
            root_path = scope.get("root_path", "")
            if root_path and not route_path.startswith(root_path):
                return _raise(ValueError(f"No route found for path {route_path!r}."))
            route_path = route_path[len(root_path) :]
        route_path = route_path.lstrip("/")  # as Django matches
        for route in self.routes:
            try:
                match = route.pattern.match(route_path)
                if not match:
                    continue
                new_path, args, kwargs = match
                kwargs.update(route.default_args)
                outer = scope.get("url_route", {})
                url_route = {"args": outer.get("args", ()) + args, "kwargs": {**outer.get("kwargs", {}), **kwargs}}
                return route.callback(dict(scope, path_remaining=new_path, url_route=url_route), receive, send)
            except Resolver404:
                continue
        if nested:
            raise Resolver404(f"No route found for path {route_path!r}.")
        if scope["type"] == "websocket":
            # Channels raises ValueError here: a traceback in the log for every handshake anyone
            # sends to a wrong path. Refuse it instead (HTTP 403, as for a refused origin).
            logger.debug("no WebSocket route for %r: handshake refused", route_path)
            return WebsocketDenier()(scope, receive, send)
        return _raise(ValueError(f"No route found for path {route_path!r}."))


websocket_urlpatterns = [
    path("api/v1/socket", SessionConsumer.as_asgi()),
]
