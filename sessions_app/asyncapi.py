"""The socket's contract as an AsyncAPI 3.0 document, generated from the state registry.

Every registered state (built-in or added by an app) becomes a ``send`` operation with its request
message (``data`` from its DRF ``schema``) and its reply (``data`` from its declared ``reply``, see
registry.DataSchema), each declared push (registry.push_state) a ``receive`` operation; the
handshake, the error frame with every code, and the close codes complete it. DRF serializers
become JSON Schema through drf-spectacular's own field mapping (``AutoSchema``, with OpenAPI 3.1's
JSON Schema dialect: ``SPECTACULAR_SETTINGS["OAS_VERSION"]``); nested serializers become
``components.schemas`` entries named as drf-spectacular names them. Nothing here knows the shape
of any state: it reads the registry. Served at ``/api/v1/socket/asyncapi.json``
(sessions_app/contract_views.py) and written by ``manage.py asyncapi``.

Specification: https://www.asyncapi.com/docs/reference/specification/v3.0.0. AsyncAPI has no
notion of close codes or error codes: they are in the channel's description and in the
extensions ``x-close-codes`` and ``x-error-codes``.
"""

import functools
import inspect
from typing import Any

from . import protocol
from .registry import PUSHES, REGISTRY
from .replies import InitialisedSerializer
from .schema_mapping import SchemaMapper, without_markers

SOCKET_PATH = "/api/v1/socket"
CHANNEL = "socket"
_CHANNEL_REF = {"$ref": f"#/channels/{CHANNEL}"}

# What each error code means (docs/protocol.md, section 6); the close code is protocol.CLOSE_FOR's.
ERROR_MEANINGS = {
    protocol.NOT_AUTHENTICATED: "Bad or missing token, a frame before the handshake, or the credentials ended "
    "(`data.reason`: deactivated, password_changed, logged_out, disconnected).",
    protocol.AUTH_TIMEOUT: "No handshake in time (SESSIONS_AUTH_TIMEOUT).",
    protocol.TOKEN_EXPIRED: "The access token expired on a live socket without `authenticate`.",
    protocol.INVALID_JSON: "The frame is not valid JSON.",
    protocol.INVALID_MESSAGE: "JSON, but not a valid request envelope.",
    protocol.UNSUPPORTED_FRAME: "A binary or empty frame.",
    protocol.MESSAGE_TOO_LARGE: "A frame over SESSIONS_MAX_MESSAGE_BYTES.",
    protocol.UNKNOWN_STATE: "No state of that name is registered.",
    protocol.INVALID_DATA: "`data` fails the state's schema (`errors` by field), or a patch cannot be applied.",
    protocol.NOT_FOUND: "The session (or revision) does not exist or is not visible to the user.",
    protocol.PERMISSION_DENIED: "The user's role does not allow it.",
    protocol.NOT_JOINED: "The state needs a joined session.",
    protocol.CONFLICT: "`patch` or `restore` on an old version (`data.version`: the current one).",
    protocol.PATCH_TOO_COSTLY: "The patch would do more work than its size allows (`data.limit`).",
    protocol.QUOTA_EXCEEDED: "`save` past the owner's revision bytes (`data`: limit, used).",
    protocol.RATE_LIMITED: "Over SESSIONS_RATE_LIMIT messages per second.",
    protocol.TOO_MANY_CONNECTIONS: "The user already has SESSIONS_MAX_CONNECTIONS_PER_USER sockets.",
    protocol.SERVER_ERROR: "An unexpected exception in a handler (logged).",
    protocol.UNAVAILABLE: "The database or channel layer is unreachable.",
}

# (code, meaning, what a client should do): docs/protocol.md, section 6.
CLOSE_CODES = (
    (protocol.CLOSE_NORMAL, "normal: after `save`, or the client closed", "stay closed"),
    (protocol.CLOSE_SERVICE_RESTART, "service restart: the process is draining", "reconnect soon, re-join with since"),
    (protocol.CLOSE_TOO_SLOW, "too slow: the client did not read", "reconnect and re-join with since"),
    (protocol.CLOSE_AUTH, "authenticate again", "refresh the token, then reconnect"),
    (protocol.CLOSE_AUTH_TIMEOUT, "authentication timeout", "reconnect"),
    (protocol.CLOSE_TOO_LARGE, "message too large", "stay closed (a client bug)"),
    (protocol.CLOSE_RATE_LIMITED, "rate or connection limit", "reconnect after a longer backoff"),
    (protocol.CLOSE_UNAVAILABLE, "service unavailable", "reconnect with backoff"),
)

_DESCRIPTION = """\
The WebSocket protocol of this server, generated from its state registry (docs/protocol.md is the
prose contract). One connection is one user's interactive session; every frame is a UTF-8 text
frame holding one JSON object.

**Handshake.** The first frame must be `{"token": "<access token>"}` (from `POST /api/v1/token/`);
the server answers `initialised`, or `error` `not_authenticated` and closes with 4401.

**Requests** are `{"state", "data"?, "id"?}`; the reply is `{"state", "data", "id"?}` with the same
state, or an error frame. Replies come back in request order. **Pushes** have no `id`.

**Close codes.** {close_codes}
"""


def _frame(state: dict[str, Any], data: dict[str, Any] | None, *, with_id: bool, data_required: bool) -> dict:
    properties: dict[str, Any] = {"state": state}
    if data is not None:
        properties["data"] = data
    if with_id:
        properties["id"] = {"$ref": "#/components/schemas/RequestId"}
    required = ["state", "data"] if data is not None and data_required else ["state"]
    return {"type": "object", "properties": properties, "required": required}


def _error_frame() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "state": {"const": "error"},
            "code": {"enum": list(protocol.ERROR_CODES)},
            "error": {"type": "string", "description": "Human-readable text; never a traceback."},
            "id": {"$ref": "#/components/schemas/RequestId"},
            "request_state": {"type": "string", "description": "The state of the request, when known."},
            "errors": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "description": "Validation failures by field (dotted for nested fields).",
            },
            "data": {"type": "object", "description": "Machine-readable details (a conflict's current version)."},
        },
        "required": ["state", "code", "error"],
    }


def cached_document(*, host: str, secure: bool) -> dict[str, Any]:
    """``document``, made once per host, scheme and registry contents (about 0.1 s of CPU each: the
    HTTP views serve it to anyone). The same dict each time: callers must not change it.

    The registry normally changes only at start-up; a state registered or removed later (a test,
    an app importing a module late) makes a new document. At most 16 are kept (one per host in
    ``ALLOWED_HOSTS`` a client named, and scheme).
    """
    fingerprint = (tuple((n, id(s)) for n, s in REGISTRY.items()), tuple((n, id(p)) for n, p in PUSHES.items()))
    return _cached(host, secure, fingerprint)


@functools.lru_cache(maxsize=16)
def _cached(host: str, secure: bool, fingerprint: tuple[Any, ...]) -> dict[str, Any]:
    return document(host=host, secure=secure)


def document(*, host: str = "localhost:8000", secure: bool = False) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the socket, as a JSON-serialisable dict.

    ``host``: the server's ``host[:port]`` for ``servers``; ``secure``: ``wss`` rather than ``ws``.
    Reads the registry as it is now (states registered after Django's start-up by tests or apps
    included). Raises TypeError for a declared schema that is none of DataSchema's forms.
    """
    mapper = SchemaMapper()
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def reply_of(message_id: str) -> dict[str, Any]:
        return {
            "channel": _CHANNEL_REF,
            "messages": [
                {"$ref": f"#/channels/{CHANNEL}/messages/{message_id}"},
                {"$ref": f"#/channels/{CHANNEL}/messages/error"},
            ],
        }

    messages["handshake"] = {
        "name": "handshake",
        "title": "Handshake",
        "summary": "The first frame: the access token.",
        "payload": {"type": "object", "properties": {"token": {"type": "string"}}, "required": ["token"]},
    }
    messages["initialised"] = {
        "name": "initialised",
        "title": "initialised",
        "summary": "The handshake succeeded.",
        "payload": _frame(
            {"const": "initialised"},
            mapper.inline(InitialisedSerializer, "response"),
            with_id=False,
            data_required=True,
        ),
    }
    operations["handshake"] = {
        "action": "send",
        "channel": _CHANNEL_REF,
        "title": "Authenticate the connection",
        "description": "Must be the first frame, within SESSIONS_AUTH_TIMEOUT seconds (else `auth_timeout`, 4408). "
        "A failure is `not_authenticated` and close 4401.",
        "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/handshake"}],
        "reply": reply_of("initialised"),
    }
    for name in sorted(REGISTRY):
        entry = REGISTRY[name]
        doc = inspect.getdoc(entry.handler) or ""
        messages[f"request.{name}"] = {
            "name": name,
            "title": f"{name} request",
            "summary": doc.split("\n\n")[0].replace("\n", " ")[:300] if doc else f"The {name} request.",
            "payload": _frame({"const": name}, mapper.data(entry.schema, "request"), with_id=True, data_required=False),
        }
        messages[f"reply.{name}"] = {
            "name": name,
            "title": f"{name} reply",
            "payload": _frame(
                {"const": name},
                mapper.data(entry.reply, "response", declared=False),
                with_id=True,
                data_required=True,
            ),
        }
        operations[f"request.{name}"] = {
            "action": "send",
            "channel": _CHANNEL_REF,
            "title": name,
            "description": doc or f"The {name} state.",
            "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/request.{name}"}],
            "reply": reply_of(f"reply.{name}"),
            "x-needs-session": entry.needs_session,
            "x-reply-declared": entry.reply is not None,
        }
    for name in sorted(PUSHES):
        declared = PUSHES[name]
        messages[f"push.{name}"] = {
            "name": name,
            "title": f"{name} push",
            "summary": declared.description or f"The {name} push.",
            "payload": _frame(
                {"const": name}, mapper.data(declared.payload, "response"), with_id=False, data_required=True
            ),
        }
        operations[f"push.{name}"] = {
            "action": "receive",
            "channel": _CHANNEL_REF,
            "title": name,
            "description": f"{declared.description} To: {declared.audience}.".strip(),
            "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/push.{name}"}],
        }
    messages["error"] = {
        "name": "error",
        "title": "error",
        "summary": "An error frame: the answer to a request that failed, or without an id (e.g. rate_limited).",
        "payload": _error_frame(),
    }
    operations["error"] = {
        "action": "receive",
        "channel": _CHANNEL_REF,
        "title": "error",
        "description": "Error frames without a request to answer (rate_limited, token_expired, not_authenticated "
        "with data.reason), then the close code of x-error-codes when there is one.",
        "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/error"}],
    }
    close_table = "; ".join(f"{code}: {meaning} ({should})" for code, meaning, should in CLOSE_CODES)
    schemas = mapper.registry.build({}).get("schemas", {})
    schemas["RequestId"] = {
        "description": "A request id, echoed in the reply: a string of at most 64 characters or a 64-bit integer.",
        "oneOf": [
            {"type": "string", "maxLength": protocol.MAX_ID_LENGTH},
            {"type": "integer", "minimum": protocol.INT64_MIN, "maximum": protocol.INT64_MAX},
        ],
    }
    return without_markers(
        {
            "asyncapi": "3.0.0",
            "info": {
                "title": "Interactive sessions: WebSocket protocol",
                "version": str(protocol.PROTOCOL_VERSION),
                "description": _DESCRIPTION.replace("{close_codes}", close_table),
            },
            "defaultContentType": "application/json",
            "servers": {"server": {"host": host, "protocol": "wss" if secure else "ws"}},
            "channels": {
                CHANNEL: {
                    "address": SOCKET_PATH,
                    "title": "The session socket",
                    "servers": [{"$ref": "#/servers/server"}],
                    "messages": messages,
                    "bindings": {"ws": {"bindingVersion": "0.1.0"}},
                    "x-close-codes": [
                        {"code": code, "meaning": meaning, "client_should": should}
                        for code, meaning, should in CLOSE_CODES
                    ],
                    "x-error-codes": [
                        {"code": code, "meaning": ERROR_MEANINGS[code], "closes": protocol.CLOSE_FOR.get(code)}
                        for code in protocol.ERROR_CODES
                    ],
                }
            },
            "operations": operations,
            "components": {"schemas": schemas},
        }
    )
