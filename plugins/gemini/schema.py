"""Gemini schemas → JSON Schema.

Gemini declares tool parameters and response schemas either as JSON Schema
(``parametersJsonSchema`` / ``responseJsonSchema``) or as its OpenAPI subset
(``parameters`` / ``responseSchema``) whose types are upper-case (``OBJECT``,
``STRING``) and whose optional values say ``nullable: true``. The core's
schema-aware typing and JSON-mode checks speak JSON Schema, so both forms are
normalised here, structurally: a property that happens to be called
``type`` is never touched.
"""

from __future__ import annotations

from typing import Any

_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties",
                          "dependentSchemas"})
_SCHEMA_VALUES = frozenset({"items", "additionalProperties", "not", "contains",
                            "propertyNames", "if", "then", "else", "unevaluatedItems",
                            "unevaluatedProperties"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems", "items"})
_UNSPECIFIED = "type_unspecified"


def json_schema(schema: Any) -> Any:
    """A JSON Schema equivalent of ``schema`` (a new object; input untouched)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            kind = _type(value)
            if kind is not None:
                out[key] = kind
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: json_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            out[key] = json_schema(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [json_schema(sub) for sub in value]
        else:
            out[key] = value
    if out.pop("nullable", None) is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _type(value: Any) -> Any:
    """Lower-case type names; ``TYPE_UNSPECIFIED`` means no constraint (None)."""
    if isinstance(value, str):
        kind = value.strip().lower()
        return None if kind == _UNSPECIFIED else kind
    if isinstance(value, list):
        kinds = [_type(item) for item in value]
        return [kind for kind in kinds if kind is not None] or None
    return value
