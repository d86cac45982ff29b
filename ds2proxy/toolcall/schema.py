"""Bringing parsed arguments in line with the schema the request declared.

The model often writes ``1`` for a string field or an object where the tool
wants its JSON text; strict clients reject such calls. Only fields the
schema clearly types as string change; unions and missing schemas are left
as they are.
"""

from __future__ import annotations

import json
from typing import Any


# Schema nodes looked at to find one value's schema: generated schemas need
# a handful; a self-referencing or exploding one stops here, cheaply.
_BUDGET = 64
_UNIONS = ("anyOf", "oneOf")


def effective(schema: Any, root: Any = None) -> Any:
    """``schema`` as it constrains a value: a local ``$ref`` (``#/$defs/X``)
    followed, an ``allOf`` merged, and a union whose only other choice is
    null taken as its one choice — the shapes generated schemas use
    (pydantic's ``Optional[str]`` is ``anyOf: [string, null]``)."""
    return _effective(schema, schema if root is None else root, [_BUDGET])


def _effective(schema: Any, root: Any, budget: list[int]) -> Any:
    while isinstance(schema, dict) and budget[0] > 0:
        budget[0] -= 1
        ref = schema.get("$ref")
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        if isinstance(ref, str):
            target = _pointer(root, ref)
            schema = {**target, **rest} if isinstance(target, dict) else rest
            continue
        members = schema.get("allOf")
        if isinstance(members, list) and "type" not in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for member in members:
                member = _effective(member, root, budget)
                if isinstance(member, dict):
                    merged = {**member, **merged}
            schema = merged
            continue
        choice = _only_choice(schema, root, budget)
        if choice is None:
            return schema
        schema = choice
    return schema


def _only_choice(schema: dict, root: Any, budget: list[int]) -> dict | None:
    """The one non-null alternative of an ``anyOf`` / ``oneOf``, else None."""
    if "type" in schema:
        return None
    for key in _UNIONS:
        options = schema.get(key)
        if isinstance(options, list):
            kept = [o for o in (_effective(o, root, budget) for o in options) if not _is_null(o)]
            if len(kept) == 1 and isinstance(kept[0], dict):
                return {**{k: v for k, v in schema.items() if k != key}, **kept[0]}
    return None


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _pointer(root: Any, ref: str) -> Any:
    """The part of ``root`` a local JSON pointer names (``#``, ``#/$defs/X``)."""
    if not ref.startswith("#"):
        return None
    node = root
    for token in ref[1:].split("/")[1:] if ref != "#" else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif (isinstance(node, list) and token.isascii() and token.isdigit()
              and int(token) < len(node)):
            node = node[int(token)]
        else:
            return None
    return node


def is_string_schema(schema: Any, root: Any = None) -> bool:
    """True for ``string``, a string/null type list, a string const or an
    all-string enum (after :func:`effective`)."""
    schema = effective(schema, root)
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


def property_schema(schema: Any, name: str, root: Any = None) -> Any:
    """The schema of top-level property ``name``, or None."""
    schema = effective(schema, root)
    if not isinstance(schema, dict):
        return None
    properties = schema.get("properties")
    if isinstance(properties, dict) and name in properties:
        return properties[name]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def conform(value: Any, schema: Any, root: Any = None) -> Any:
    """``value`` with non-strings turned into text wherever ``schema`` says
    string; ``root`` is the whole schema its ``$ref``s point into."""
    root = schema if root is None else root
    schema = effective(schema, root)
    if not isinstance(schema, dict):
        return value
    if is_string_schema(schema, root):
        return _as_text(value)
    if isinstance(value, dict):
        return {key: conform(item, property_schema(schema, key, root), root)
                for key, item in value.items()}
    if isinstance(value, list):
        items = schema.get("prefixItems", schema.get("items"))
        return _conform_items(value, items, root)
    return value


def _conform_items(values: list[Any], items: Any, root: Any) -> list[Any]:
    if isinstance(items, list):
        return [conform(v, items[i], root) if i < len(items) else v
                for i, v in enumerate(values)]
    return [conform(v, items, root) for v in values]


def _as_text(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return compact_json(value)
