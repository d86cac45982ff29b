"""Declarations that shape a chat turn: function tools and the response
format, in the OpenAI forms every family reuses (Claude's ``input_schema``,
Responses' flat tools and ``text.format``, Ollama's tools).

A tool the client means to be called must have a name and an object schema,
and a ``json_schema`` format must carry its schema: the official APIs refuse
such requests with a 400, so the turn is refused before any upstream work
rather than run with the declaration silently dropped.
"""

from __future__ import annotations

from typing import Any

from ..canonical import ResponseFormat, ToolSpec
from ..errors import InvalidRequest


def parse_tools(value: Any) -> list[ToolSpec]:
    """Function and freeform (``custom``) tools in the nested or bare shape;
    other tool types are skipped."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("'tools' must be a list", param="tools")
    tools: list[ToolSpec] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"tools[{i}] must be an object", param="tools")
        kind = item.get("type", "function")
        inner = item.get("custom") if kind == "custom" else item.get("function")
        fn = inner if isinstance(inner, dict) else item
        name = fn.get("name")
        if kind == "custom":  # Chat nests it under "custom", Responses has it flat
            where = f"tools[{i}].custom" if fn is not item else f"tools[{i}]"
            if not isinstance(name, str) or not name.strip():
                raise InvalidRequest(f"'{where}.name' must be a non-empty string",
                                     param=f"{where}.name")
            tools.append(ToolSpec(name=name.strip(), description=_custom_description(fn),
                                  kind="custom"))
            continue
        if kind != "function":
            continue
        where = f"tools[{i}].function" if "function" in item else f"tools[{i}]"
        if fn is item and "function" in item:
            raise InvalidRequest(f"'{where}' must be an object", param=where)
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest(f"'{where}.name' must be a non-empty string",
                                 param=f"{where}.name")
        tools.append(ToolSpec(name=name.strip(), description=str(fn.get("description") or ""),
                              parameters=_tool_schema(fn, where)))
    return tools


def repeated_name(tools: list[ToolSpec]) -> str | None:
    """The first name two declared tools share, if any: Anthropic and Gemini
    refuse such a request (a call could not say which tool it means), while
    OpenAI's APIs take it."""
    seen: set[str] = set()
    for tool in tools:
        if tool.name in seen:
            return tool.name
        seen.add(tool.name)
    return None


_SCHEMA_KEYS = ("parameters", "input_schema", "inputSchema", "schema")


def _tool_schema(fn: dict, where: str) -> dict | None:
    """The first schema key given; one that is not an object is a 400."""
    key = next((k for k in _SCHEMA_KEYS if fn.get(k) is not None), None)
    if key is None:
        return None
    if not isinstance(fn[key], dict):
        raise InvalidRequest(f"'{where}.{key}' must be an object", param=f"{where}.{key}")
    return fn[key]


def _custom_description(tool: dict) -> str:
    """A freeform tool's description plus the grammar its input must follow
    (Codex's apply_patch): without it the model cannot know the syntax.
    Responses puts ``syntax`` / ``definition`` in ``format``, Chat Completions
    in ``format.grammar``."""
    description = str(tool.get("description") or "")
    fmt = tool.get("format") if isinstance(tool.get("format"), dict) else {}
    grammar = fmt.get("grammar") if isinstance(fmt.get("grammar"), dict) else fmt
    definition = grammar.get("definition")
    if fmt.get("type") != "grammar" or not isinstance(definition, str) or not definition.strip():
        return description
    syntax = grammar.get("syntax") if isinstance(grammar.get("syntax"), str) else "grammar"
    return (f"{description}\n\nThe input must match this {syntax} grammar:\n"
            f"{definition.strip()}").strip()


def parse_response_format(value: Any, field: str = "response_format") -> ResponseFormat:
    """``response_format`` (``field`` names it: Responses' ``text.format``)."""
    if value is None:
        return ResponseFormat()
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{field}' must be an object", param=field)
    kind = value.get("type", "text")
    if kind == "text":
        return ResponseFormat()
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind == "json_schema":
        return _json_schema_format(value, field)
    raise InvalidRequest(f"'{field}.type' must be one of: text, json_object, json_schema",
                         param=f"{field}.type")


def _json_schema_format(value: dict, field: str) -> ResponseFormat:
    """Chat's ``{"json_schema": {"name", "schema"}}`` or the flat form (``schema``
    beside ``type``, as Responses and Claude send it). The schema is required,
    as OpenAI requires it: without one the request is refused before the turn."""
    nested = value.get("json_schema")
    if nested is not None and not isinstance(nested, dict):
        raise InvalidRequest(f"'{field}.json_schema' must be an object",
                             param=f"{field}.json_schema")
    spec, where = (nested, f"{field}.json_schema") if nested is not None else (value, field)
    schema = spec.get("schema")
    if schema is None:
        missing = f"{where}.schema" if nested is not None or "schema" in value \
            or "name" in value else f"{field}.json_schema"
        raise InvalidRequest(f"'{missing}' is required for type json_schema", param=missing)
    if not isinstance(schema, dict):
        raise InvalidRequest(f"'{where}.schema' must be an object", param=f"{where}.schema")
    return ResponseFormat(type="json_schema", schema=schema, name=spec.get("name"))
