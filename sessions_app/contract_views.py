"""The API's contract over HTTP: the socket's AsyncAPI document and the pages that show it and the
REST API's OpenAPI schema (drf-spectacular's views, routed in project/urls.py).

``GET /api/v1/socket/asyncapi.json``: the AsyncAPI 3.0 document (sessions_app/asyncapi.py), its
server the host the request came to. ``GET /api/v1/docs/``: one page for both, rendered on the
server from the two documents, with no script and nothing from another site (it works offline);
Swagger UI, served from drf-spectacular-sidecar's files, is at ``/api/v1/docs/rest/``.
"""

import json
import re
import threading
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import get_urlconf
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from . import asyncapi

# The OpenAPI schema by URLconf, made once: generating it walks every view
# (about 0.1 s of CPU) and the view serves it to anyone. URLconfs are the project's: few.
_openapi: dict[Any, dict[str, Any]] = {}
_openapi_lock = threading.Lock()


def openapi_schema() -> dict[str, Any]:
    """The REST API's OpenAPI 3.1 schema (drf-spectacular's SchemaGenerator, every DRF view of the
    request's URLconf), cached per URLconf. The same dict each time: callers must not change it."""
    urlconf = get_urlconf()  # a request's own (``request.urlconf``), else None: ROOT_URLCONF
    key = (urlconf, settings.ROOT_URLCONF)
    with _openapi_lock:
        schema = _openapi.get(key)
        if schema is None:
            schema = _openapi[key] = SchemaGenerator(urlconf=urlconf).get_schema(request=None, public=True)
        return schema


class SchemaView(SpectacularAPIView):
    """``GET /api/v1/schema/``: drf-spectacular's schema view (YAML, or JSON with
    ``?format=json`` or ``Accept``), serving the cached ``openapi_schema``."""

    def _get_schema_response(self, request: Request) -> Response:
        filename = self._get_filename(request, None)
        return Response(data=openapi_schema(), headers={"Content-Disposition": f'inline; filename="{filename}"'})


def _document_for(request: HttpRequest) -> dict[str, Any]:
    return asyncapi.cached_document(host=request.get_host(), secure=request.is_secure())


def asyncapi_json(request: HttpRequest) -> JsonResponse:
    """``GET``: the socket's AsyncAPI 3.0 document (application/json)."""
    return JsonResponse(_document_for(request), json_dumps_params={"indent": 1})


_REF = re.compile(r"&quot;#/components/schemas/([\w.-]+)&quot;")


def _pretty(schema: Any) -> SafeString:
    """``schema`` as indented JSON, HTML-escaped, each component reference a link to its entry."""
    text = escape(json.dumps(schema, indent=2, ensure_ascii=False))
    return mark_safe(_REF.sub(r'<a href="#schema-\1">&quot;#/components/schemas/\1&quot;</a>', text))  # noqa: S308


def _data_of(message: dict[str, Any]) -> Any:
    """The schema of a frame's ``data`` (the handshake's whole frame, which has none)."""
    payload = message["payload"]
    return payload["properties"].get("data", payload)


def api_docs(request: HttpRequest) -> HttpResponse:
    """``GET``: the browsable page of the REST endpoints and of every socket state and push."""
    doc = _document_for(request)
    messages = doc["channels"][asyncapi.CHANNEL]["messages"]
    states, pushes = [], []
    for key, operation in doc["operations"].items():
        if key.startswith("request."):
            name = key.removeprefix("request.")
            states.append(
                {
                    "name": name,
                    "description": operation["description"],
                    "needs_session": operation["x-needs-session"],
                    "reply_declared": operation["x-reply-declared"],
                    "request": _pretty(_data_of(messages[f"request.{name}"])),
                    "reply": _pretty(_data_of(messages[f"reply.{name}"])),
                }
            )
        elif key.startswith("push."):
            name = key.removeprefix("push.")
            pushes.append(
                {"name": name, "description": operation["description"], "data": _pretty(_data_of(messages[key]))}
            )
    openapi = openapi_schema()
    endpoints = [
        {
            "method": method.upper(),
            "path": path,
            "summary": operation.get("summary") or operation.get("description", ""),
        }
        for path, item in openapi.get("paths", {}).items()
        for method, operation in item.items()
    ]
    context = {
        "info": doc["info"],
        "socket_url": f"{doc['servers']['server']['protocol']}://{doc['servers']['server']['host']}{asyncapi.SOCKET_PATH}",
        "handshake": _pretty(messages["handshake"]["payload"]),
        "initialised": _pretty(_data_of(messages["initialised"])),
        "states": states,
        "pushes": pushes,
        "error_frame": _pretty(messages["error"]["payload"]),
        "error_codes": doc["channels"][asyncapi.CHANNEL]["x-error-codes"],
        "close_codes": doc["channels"][asyncapi.CHANNEL]["x-close-codes"],
        "components": [(name, _pretty(schema)) for name, schema in doc["components"]["schemas"].items()],
        "endpoints": endpoints,
    }
    return render(request, "api/docs.html", context)
