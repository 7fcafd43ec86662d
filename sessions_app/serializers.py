"""Input schemas of the states (DRF serializers). Values come back exactly as sent."""

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .history import PAGE_DEFAULT, PAGE_MAX
from .models import Role


class StrictCharField(serializers.CharField):
    """A CharField that refuses non-strings (DRF's turns ``5`` into ``"5"``) and keeps whitespace."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that refuses strings, floats and booleans (DRF's turns ``"1"`` into ``1``)."""

    default_error_messages = {"not_an_integer": "Must be an integer."}

    def to_internal_value(self, data: object) -> int:
        if type(data) is not int:
            self.fail("not_an_integer")
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUIDField that takes only its canonical string form (DRF's also turns ``0`` into a UUID)."""

    def to_internal_value(self, data: object) -> object:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


# RFC 6902 operations, as the client sends them (pointers are RFC 6901). Extra members are kept as
# sent (section 7, "JSON Patch").
PATCH_OPERATION: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"op": {"enum": ["add", "replace", "test"]}, "path": {"type": "string"}, "value": {}},
            "required": ["op", "path", "value"],
        },
        {
            "type": "object",
            "properties": {"op": {"const": "remove"}, "path": {"type": "string"}},
            "required": ["op", "path"],
        },
        {
            "type": "object",
            "properties": {
                "op": {"enum": ["move", "copy"]},
                "from": {"type": "string"},
                "path": {"type": "string"},
            },
            "required": ["op", "from", "path"],
        },
    ],
    "description": "An RFC 6902 operation.",
}
MAX_OPS = 1000


@extend_schema_field({"type": "array", "items": PATCH_OPERATION, "minItems": 1, "maxItems": MAX_OPS})
class OperationsField(serializers.ListField):
    """RFC 6902 operations, at least one: validated as objects here, applied (and refused when
    malformed) by documents.apply_patch; documented as ``PATCH_OPERATION`` (drf-spectacular)."""


class TokenSchema(serializers.Serializer):
    """``authenticate``: ``{"token": "<access token>"}``."""

    token = StrictCharField()


class CreateSchema(serializers.Serializer):
    """``create``: ``{"title": str 1..200, "data": object = {}}``."""

    title = StrictCharField(min_length=1, max_length=200)
    data = serializers.DictField(required=False, default=dict)


class JoinSchema(serializers.Serializer):
    """``join``: ``{"session": uuid, "since": int >= 0?}``."""

    session = StrictUUIDField()
    since = StrictIntegerField(min_value=0, required=False, allow_null=True, default=None)


KEY_VALIDATOR = RegexValidator(r"\A[A-Za-z0-9_.~-]{1,64}\Z", "Letters, digits, _ - . ~ only, at most 64.")


class PatchSchema(serializers.Serializer):
    """``patch``: ``{"version": int >= 0, "ops": [RFC 6902 operation, ...]}`` (at least one), and
    an optional ``key``: 1-64 characters of letters, digits, ``_``, ``-``, ``.``, ``~`` (an
    idempotency key: docs/protocol.md, section 7, "Rebase")."""

    version = StrictIntegerField(min_value=0)
    ops = OperationsField(child=serializers.DictField(), min_length=1, max_length=MAX_OPS)
    key = StrictCharField(max_length=64, required=False, default="", validators=[KEY_VALIDATOR])


class InviteSchema(serializers.Serializer):
    """``invite``: ``{"username": str, "role": "editor" | "viewer"}``."""

    username = StrictCharField(max_length=150)
    role = serializers.ChoiceField(choices=[Role.EDITOR.value, Role.VIEWER.value])


class ContactsSchema(serializers.Serializer):
    """``contacts``: ``{"prefix": str = ""}`` (up to 150 characters, a username's most)."""

    prefix = StrictCharField(max_length=150, required=False, allow_blank=True, default="", trim_whitespace=True)


class RemoveSchema(serializers.Serializer):
    """``remove``: ``{"username": str}``."""

    username = StrictCharField(max_length=150)


class RenameSchema(serializers.Serializer):
    """``rename``: ``{"title": str 1..200}``."""

    title = StrictCharField(min_length=1, max_length=200)


class SaveSchema(serializers.Serializer):
    """``save``: ``{"message": str = ""}``."""

    message = StrictCharField(max_length=500, required=False, allow_blank=True, default="")


class RevisionsSchema(serializers.Serializer):
    """``revisions``: ``{"before": int >= 1?, "changes_before": int >= 1?, "limit": int 1..50 = 20}``
    (``before`` a revision number, ``changes_before`` a version: the page holds older ones only)."""

    before = StrictIntegerField(min_value=1, required=False, allow_null=True, default=None)
    changes_before = StrictIntegerField(min_value=1, required=False, allow_null=True, default=None)
    limit = StrictIntegerField(min_value=1, max_value=PAGE_MAX, required=False, default=PAGE_DEFAULT)


class RevisionSchema(serializers.Serializer):
    """``revision``: ``{"number": int >= 1}``."""

    number = StrictIntegerField(min_value=1)


class RestoreSchema(serializers.Serializer):
    """``restore``: ``{"number": int >= 1, "version": int >= 0}`` (the version the document is at)."""

    number = StrictIntegerField(min_value=1)
    version = StrictIntegerField(min_value=0)
