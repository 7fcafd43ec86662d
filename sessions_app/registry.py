"""The state registry: one handler and one input schema per state, registered by name.

A client reaches a handler only through this table, never by naming a consumer method
(protocol section 5): ``{"state": "disconnect"}`` is just an unknown state.

Adding a state::

    from rest_framework import serializers
    from sessions_app.registry import state

    class EchoSchema(serializers.Serializer):
        text = serializers.CharField(max_length=100)

    @state("echo", schema=EchoSchema)
    async def echo(conn, data):
        return {"text": data["text"]}
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rest_framework import serializers

from . import protocol
from .protocol import ProtocolError

if TYPE_CHECKING:
    from .consumers import SessionConsumer

Handler = Callable[["SessionConsumer", dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class State:
    """A registered state: its ``handler(conn, data) -> reply data``, its DRF ``schema`` (or None),
    and whether it needs a joined session (checked before the schema: ``not_joined`` wins).
    """

    name: str
    handler: Handler
    schema: type[serializers.Serializer] | None
    needs_session: bool = False

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


def state(
    name: str, *, schema: type[serializers.Serializer] | None = None, needs_session: bool = False
) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as the handler of ``name``, with its input ``schema``.

    The handler gets the consumer and the validated ``data`` and returns the reply's ``data``
    (a dict), or raises ProtocolError. With ``needs_session``, a connection that has not joined a
    session gets ``not_joined`` before its data is validated. Registering a name twice raises ValueError.
    """
    if not protocol.STATE_RE.fullmatch(name):
        raise ValueError(f"invalid state name {name!r}")

    def register(handler: Handler) -> Handler:
        if name in REGISTRY:
            raise ValueError(f"state {name!r} is already registered")
        REGISTRY[name] = State(name, handler, schema, needs_session)
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
