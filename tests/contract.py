"""Helpers of the contract tests: the vendored AsyncAPI 3.0 JSON Schema, and validators of frames
against the generated document's message payloads."""

import json
from pathlib import Path
from typing import Any

import jsonschema

DATA = Path(__file__).resolve().parent / "data"
# The official AsyncAPI 3.0.0 JSON Schema, from the npm package @asyncapi/specs 6.11.1
# (schemas/3.0.0.json, Apache License 2.0: tests/data/asyncapi/LICENSE and NOTICE).
ASYNCAPI_SCHEMA: dict[str, Any] = json.loads((DATA / "asyncapi" / "asyncapi-3.0.0.json").read_text())


def asyncapi_errors(document: dict[str, Any]) -> list[str]:
    """Every way ``document`` breaks the AsyncAPI 3.0 JSON Schema (draft-07), as readable lines."""
    validator = jsonschema.validators.validator_for(ASYNCAPI_SCHEMA)(ASYNCAPI_SCHEMA)
    return [f"{list(error.absolute_path)}: {error.message[:300]}" for error in validator.iter_errors(document)]


def closed(schema: Any) -> Any:
    """A copy of ``schema`` in which every object schema listing ``properties`` and saying nothing of
    others refuses others: a frame with a member its schema does not declare fails."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def message_key(frame: dict[str, Any]) -> str:
    """The key in the channel's messages of a frame the server sent."""
    if frame["state"] in ("error", "initialised"):
        return frame["state"]
    return f"reply.{frame['state']}" if "id" in frame else f"push.{frame['state']}"


class FrameChecker:
    """Validates frames the server sent against the document's message payloads, closed (above).

    ``check(frame)`` raises jsonschema.ValidationError for a frame its schema refuses and records
    the message key in ``seen``.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.messages = document["channels"]["socket"]["messages"]
        self.seen: set[str] = set()

    def check(self, frame: dict[str, Any]) -> None:
        key = message_key(frame)
        assert key in self.messages, f"{key} is not in the AsyncAPI document"
        schema = {**closed(self.messages[key]["payload"]), "components": closed(self.document["components"])}
        cls = jsonschema.Draft202012Validator
        cls(schema, format_checker=cls.FORMAT_CHECKER).validate(frame)
        self.seen.add(key)
