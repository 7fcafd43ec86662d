"""The state registry: one handler and one input schema per state, registered by name.

A client reaches a handler only through this table, never by naming a consumer method
(protocol section 5): ``{"state": "disconnect"}`` is just an unknown state.

Adding a state::

    from rest_framework import serializers
    from sessions_app.registry import state

    class EchoSchema(serializers.Serializer):
        text = serializers.CharField(max_length=100)

    class EchoReply(serializers.Serializer):
        text = serializers.CharField()

    @state("echo", schema=EchoSchema, reply=EchoReply)
    async def echo(conn, data):
        return {"text": data["text"]}

``reply`` (a serializer, a JSON Schema, or a tuple of them: one of) documents the reply's ``data``
in the generated AsyncAPI document (sessions_app/asyncapi.py); a state without one still works,
and ``manage.py check`` warns about it (sessions_app/checks.py). Pushes a state sends are declared
with ``push_state`` the same way.
"""

import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rest_framework import serializers

from . import protocol
from .protocol import ProtocolError


class Connection(Protocol):
    """What a state handler may use of its connection (SessionConsumer implements it).

    A handler may also use Channels' API through ``channel_layer`` and ``channel_name``, as the
    Channels documentation teaches: ``await conn.channel_layer.group_add("lobby", conn.channel_name)``,
    then ``group_send("lobby", {"type": "lobby.message", ...})``, handled by a method
    ``lobby_message`` on a SessionConsumer subclass (Channels' type-to-method rule).
    """

    user: dict[str, Any]  # {"id", "username"}
    session_id: Any  # the joined session's UUID, or None
    role: str | None  # the caller's role in it: "owner", "editor", "viewer"
    session_version: int  # the newest version of it this connection has seen
    close_after_reply: int | None  # a close code to send after the current reply
    channel_name: str
    channel_layer: Any

    def schedule_token_expiry(self, token: Any) -> datetime.datetime: ...

    async def subscribe(self, session_id: Any) -> None: ...

    async def subscribe_group(self, group: str) -> None: ...

    async def unsubscribe_group(self, group: str) -> None: ...

    async def unsubscribe_unless_joined(self, session_id: Any) -> None: ...

    async def enter_session(self, outcome: Any) -> None: ...

    async def leave_session(self, pushes: list[Any]) -> None: ...

    async def publish(self, pushes: list[Any]) -> None: ...

    def send_frame(self, frame: dict[str, Any]) -> None: ...

    def write(self, text: str) -> None: ...


Handler = Callable[[Connection, dict[str, Any]], Awaitable[dict[str, Any]]]
# A reply's or a push's ``data``: a DRF serializer class, a JSON Schema (a dict), or a tuple of
# them meaning "one of" (e.g. ``join``: a snapshot or the changes after ``since``).
DataSchema = type[serializers.Serializer] | dict[str, Any] | tuple[Any, ...]
MessageHandler = Callable[[Connection, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class State:
    """A registered state: its ``handler(conn, data) -> reply data``, its DRF ``schema`` (or None),
    whether it needs a joined session (checked before the schema: ``not_joined`` wins), and the
    schema of its reply's ``data`` (``reply``, documentation only: never checked at run time; None
    when the state declares none).
    """

    name: str
    handler: Handler
    schema: type[serializers.Serializer] | None
    needs_session: bool = False
    reply: DataSchema | None = None

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validate ``data`` against the schema; returns the validated data.

        Raises ProtocolError(INVALID_DATA) with ``errors`` as ``{"field": ["message", ...]}``
        (nested fields joined with dots, e.g. ``"ops.0"``). With no schema, ``data`` is returned as sent.
        """
        if self.schema is None:
            return data
        serializer = self.schema(data=data)
        if not serializer.is_valid():
            errors = flatten_errors(serializer.errors)
            first = next(iter(errors.items()))
            raise ProtocolError(protocol.INVALID_DATA, f"{first[0]}: {first[1][0]}", errors=errors)
        return serializer.validated_data


REGISTRY: dict[str, State] = {}

# The states of the frames the server sends that are not replies (protocol section 3): a reply
# with one of them would read as an error frame or as the handshake's answer.
RESERVED = frozenset({"error", "initialised"})


def state(
    name: str,
    *,
    schema: type[serializers.Serializer] | None = None,
    needs_session: bool = False,
    reply: DataSchema | None = None,
) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as the handler of ``name``, with its input ``schema`` and
    the schema of its reply's ``data`` (``reply``: see ``DataSchema``; optional, documentation only).

    The handler gets the consumer and the validated ``data`` and returns the reply's ``data``
    (a dict; anything else is logged and answered with ``server_error``), or raises ProtocolError.
    With ``needs_session``, a connection that has not joined a session gets ``not_joined`` before
    its data is validated. Registering a name twice, or a reserved one (``error``,
    ``initialised``), raises ValueError.
    """
    if not protocol.STATE_RE.fullmatch(name):
        raise ValueError(f"invalid state name {name!r}")
    if name in RESERVED:
        raise ValueError(f"state name {name!r} is reserved: the server sends frames of that state itself")

    def register(handler: Handler) -> Handler:
        if name in REGISTRY:
            raise ValueError(f"state {name!r} is already registered")
        REGISTRY[name] = State(name, handler, schema, needs_session, reply)
        return handler

    return register


@dataclass(frozen=True, slots=True)
class Push:
    """A push the server sends without a request (``{"state": name, "data": ...}``): the schema
    of its ``data`` (``DataSchema``), to whom it goes (``audience``) and when (``description``)."""

    name: str
    payload: DataSchema
    audience: str = ""
    description: str = ""


PUSHES: dict[str, Push] = {}


def push_state(name: str, *, payload: DataSchema, audience: str = "", description: str = "") -> Push:
    """Declare a push ``name`` with the schema of its ``data``, for the generated AsyncAPI document.

    Sending a push needs no declaration (``events.push``, ``conn.send_frame``); declaring it puts it
    in the contract clients are generated from. ``audience``: e.g. "the session's other
    connections". Declaring a name twice, or a reserved one, raises ValueError; a push may share
    its name with a state (``presence``). Returns the declaration.
    """
    if not protocol.STATE_RE.fullmatch(name):
        raise ValueError(f"invalid push name {name!r}")
    if name in RESERVED:
        raise ValueError(f"push name {name!r} is reserved: the server sends frames of that state itself")
    if name in PUSHES:
        raise ValueError(f"push {name!r} is already declared")
    PUSHES[name] = declared = Push(name, payload, audience, description)
    return declared


MESSAGE_HANDLERS: dict[str, MessageHandler] = {}


def message(message_type: str) -> Callable[[MessageHandler], MessageHandler]:
    """Register the decorated coroutine as the handler of channel-layer messages of ``message_type``.

    Channels runs a consumer's method named after the type (``"lobby.message"`` ->
    ``lobby_message``); this is the same for states kept outside the consumer class: the handler
    gets the connection and the message, e.g. sent with ``group_send(group, {"type":
    "lobby.message", ...})`` to a group the connection joined. A method of the consumer with that
    name wins. Registering a type twice raises ValueError.
    """

    def register(handler: MessageHandler) -> MessageHandler:
        if message_type in MESSAGE_HANDLERS:
            raise ValueError(f"message type {message_type!r} is already registered")
        MESSAGE_HANDLERS[message_type] = handler
        return handler

    return register


def flatten_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested ``serializer.errors`` as ``{"dotted.field": [str, ...]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = "data" if key == "non_field_errors" and not prefix else str(key)
            flat.update(flatten_errors(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(errors, list) and errors and all(isinstance(e, str) for e in errors):
        flat[prefix or "data"] = [str(e) for e in errors]
    elif isinstance(errors, list):
        for index, value in enumerate(errors):
            if value:
                flat.update(flatten_errors(value, f"{prefix}.{index}" if prefix else str(index)))
    else:
        flat[prefix or "data"] = [str(errors)]
    return flat
