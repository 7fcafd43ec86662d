"""DRF serializers to JSON Schema for the AsyncAPI document (sessions_app/asyncapi.py), with
drf-spectacular's own mapping: the one that makes the REST API's OpenAPI schema, in the JSON Schema
dialect of OpenAPI 3.1 (``SPECTACULAR_SETTINGS["OAS_VERSION"]``)."""

import copy
import inspect
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ComponentRegistry
from rest_framework import serializers
from rest_framework.views import APIView

from .registry import DataSchema


class SchemaMapper:
    """drf-spectacular's serializer-to-JSON-Schema mapping, outside a view.

    ``AutoSchema`` maps serializers for a view's operation; here there is none, so it gets a bare
    APIView (no request). Nested serializers are registered as components in ``registry``.
    """

    def __init__(self) -> None:
        self.registry = ComponentRegistry()
        self.auto = AutoSchema()
        self.auto.registry = self.registry
        self.auto.path, self.auto.method = "/api/v1/socket", "POST"  # as a request body would be
        view = APIView()
        view.request = None
        self.auto.view = view

    def inline(self, serializer: type[serializers.Serializer], direction: str) -> dict[str, Any]:
        """The serializer's JSON Schema, in place (its nested serializers by reference)."""
        # _map_serializer is AutoSchema's mapping of one serializer, the one resolve_serializer
        # calls; inline, so that two apps' serializers of one class name cannot share a component.
        return self.auto._map_serializer(serializer(), direction)

    def data(self, spec: DataSchema | None, direction: str, *, declared: bool = True) -> dict[str, Any]:
        """JSON Schema of a frame's ``data`` from a DataSchema (None: any object)."""
        if spec is None:
            return {"type": "object", "description": "Not declared." if not declared else "Any object."}
        if isinstance(spec, dict):
            return copy.deepcopy(spec)
        if isinstance(spec, tuple):
            return {"oneOf": [self.member(item, direction) for item in spec]}
        if inspect.isclass(spec) and issubclass(spec, serializers.BaseSerializer):
            return self.inline(spec, direction)
        raise TypeError(f"not a serializer, a JSON Schema or a tuple of them: {spec!r}")

    def member(self, spec: Any, direction: str) -> dict[str, Any]:
        """One alternative of a ``oneOf``: a serializer by reference to its component."""
        if inspect.isclass(spec) and issubclass(spec, serializers.BaseSerializer):
            component = self.auto.resolve_serializer(spec, direction)
            if component.schema is not None:
                return component.ref
        return self.data(spec, direction)


def without_markers(value: Any) -> Any:
    """``value`` without drf-spectacular's ``x-spec-enum-id`` markers (its OpenAPI enum
    post-processing reads them; they mean nothing in an AsyncAPI document)."""
    if isinstance(value, dict):
        return {key: without_markers(item) for key, item in value.items() if key != "x-spec-enum-id"}
    if isinstance(value, list):
        return [without_markers(item) for item in value]
    return value
