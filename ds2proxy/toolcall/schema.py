"""Bringing parsed arguments in line with the schema the request declared.

The model often writes ``1`` for a string field or an object where the tool
wants its JSON text; strict clients reject such calls. Only fields the
schema clearly types as string change; unions and missing schemas are left
as they are.
"""

from __future__ import annotations

import json
from typing import Any


def is_string_schema(schema: Any) -> bool:
    """True for ``string``, a string/null type list, a string const or an
    all-string enum."""
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind == "string":
        return True
    if isinstance(kind, list):
        return "string" in kind and all(k in ("string", "null") for k in kind)
    if "const" in schema:
        return isinstance(schema["const"], str)
    enum = schema.get("enum")
    return isinstance(enum, list) and bool(enum) and all(isinstance(v, str) for v in enum)


def property_schema(schema: Any, name: str) -> Any:
    """The schema of top-level property ``name``, or None."""
    if not isinstance(schema, dict):
        return None
    properties = schema.get("properties")
    if isinstance(properties, dict) and name in properties:
        return properties[name]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def conform(value: Any, schema: Any) -> Any:
    """``value`` with non-strings turned into text wherever ``schema`` says string."""
    if not isinstance(schema, dict):
        return value
    if is_string_schema(schema):
        return _as_text(value)
    if isinstance(value, dict):
        return {key: conform(item, property_schema(schema, key)) for key, item in value.items()}
    if isinstance(value, list):
        return _conform_items(value, schema.get("items"))
    return value


def _conform_items(values: list[Any], items: Any) -> list[Any]:
    if isinstance(items, list):
        return [conform(v, items[i]) if i < len(items) else v for i, v in enumerate(values)]
    return [conform(v, items) for v in values]


def _as_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return compact_json(value)
