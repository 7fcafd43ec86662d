"""The API's contract over HTTP: the socket's AsyncAPI document and the pages that show it and the
REST API's OpenAPI schema (drf-spectacular's views, routed in project/urls.py).

``GET /api/v1/socket/asyncapi.json``: the AsyncAPI 3.0 document (sessions_app/asyncapi.py), its
server the host the request came to. ``GET /api/v1/docs/``: one page for both, rendered on the
server from the two documents, with no script and nothing from another site (it works offline);
Swagger UI, served from drf-spectacular-sidecar's files, is at ``/api/v1/docs/rest/``.
"""

import json
import re
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from drf_spectacular.generators import SchemaGenerator

from . import asyncapi


def _document_for(request: HttpRequest) -> dict[str, Any]:
    return asyncapi.document(host=request.get_host(), secure=request.is_secure())


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
    openapi = SchemaGenerator().get_schema(request=None, public=True)
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
