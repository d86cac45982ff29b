"""A Gemini ``generateContent`` body → the canonical :class:`ChatRequest`.

The model comes from the URL; everything else from the body:
``contents`` / ``systemInstruction`` (see :mod:`.contents`), ``tools`` and
``toolConfig``, and ``generationConfig`` for sampling, the output limit,
JSON mode and (through the core's ``thinking_override``) the thinking
switch. ``generationConfig``'s documented fields are checked against
Google's ranges (:mod:`ds2proxy.dialects.sampling`); fields the gateway does
not use (``safetySettings``, ``cachedContent``, ``labels`` …) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ds2proxy.plugin_api import ChatRequest, InvalidRequest, ResolvedModel, ResponseFormat, ToolSpec
from ds2proxy.dialects.openai_chat import parse_tools as parse_openai_tools
from ds2proxy.dialects.sampling import gemini_sampling
from ds2proxy.dialects.validate import mapping
from ds2proxy.dialects.thinking import thinking_override
from ds2proxy.dialects.tool_choice import parse_gemini_tool_config
from ds2proxy.dialects.tool_specs import repeated_name

from .contents import parse_contents, system_messages
from .fields import pick, pick_dict
from .schema import json_schema

_JSON_MIME = "application/json"
_ENUM_MIME = "text/x.enum"
MAX_ENUM_VALUES = 1000


@dataclass(slots=True)
class GeminiRequest:
    """The canonical request plus what only the Gemini rendering needs."""

    chat: ChatRequest
    show_thoughts: bool = False


def parse_generate_request(body: dict, model: ResolvedModel, *, stream: bool) -> GeminiRequest:
    """Validate and translate one request body (the model already resolved)."""
    messages = [*system_messages(pick(body, "systemInstruction")),
                *parse_contents(body.get("contents"))]
    tools = parse_tools(body.get("tools"))
    if (repeated := repeated_name(tools)) is not None:
        raise InvalidRequest(f"Duplicate function declaration found: {repeated}", param="tools")
    config = mapping(pick(body, "generationConfig"), "generationConfig") or {}
    sampling = gemini_sampling(config, pick)
    chat = ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        tools=tools,
        tool_choice=parse_gemini_tool_config(pick(body, "toolConfig"), tools),
        thinking=thinking_override(body),
        max_tokens=sampling.get("max_tokens"),
        sampling=sampling,
        response_format=response_format(config),
    )
    # Thought parts only when asked for, as Gemini does (Gemini CLI asks).
    thoughts = pick(pick_dict(config, "thinkingConfig"), "includeThoughts")
    return GeminiRequest(chat, show_thoughts=thoughts is True)


def parse_tools(value: Any) -> list[ToolSpec]:
    """``tools[].functionDeclarations[]``; OpenAI-style and flat tools accepted too.

    Built-in Google tools (``googleSearch``, ``codeExecution`` …) declare no
    function and are skipped.
    """
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise InvalidRequest("'tools' must be a list", param="tools")
    specs: list[ToolSpec] = []
    for index, tool in enumerate(value):
        if not isinstance(tool, dict):
            raise InvalidRequest(f"tools[{index}] must be an object", param="tools")
        declarations = pick(tool, "functionDeclarations")
        if isinstance(declarations, list):
            where = f"tools[{index}].functionDeclarations"
            specs.extend(_declaration(item, f"{where}[{n}]")
                         for n, item in enumerate(declarations))
        elif "function" in tool or "name" in tool:
            specs.extend(_with_json_schema(spec) for spec in parse_openai_tools([tool]))
    return specs


def _declaration(item: Any, where: str) -> ToolSpec:
    """One function declaration; without a name, or with a schema that is not
    an object, it is a 400 (as Gemini answers)."""
    if not isinstance(item, dict):
        raise InvalidRequest(f"'{where}' must be an object", param=where)
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(f"'{where}.name' must be a non-empty string", param=f"{where}.name")
    given = [(key, value) for key, value in (("parametersJsonSchema",
                                              pick(item, "parametersJsonSchema")),
                                             ("parameters", item.get("parameters")))
             if value is not None]
    for key, value in given:
        if not isinstance(value, dict):
            raise InvalidRequest(f"'{where}.{key}' must be an object", param=f"{where}.{key}")
    schema = given[0][1] if given else None
    return ToolSpec(name=name.strip(), description=str(item.get("description") or ""),
                    parameters=json_schema(schema) if schema is not None else None)


def _with_json_schema(spec: ToolSpec) -> ToolSpec:
    if spec.parameters is not None:
        spec.parameters = json_schema(spec.parameters)
    return spec


def response_format(config: dict) -> ResponseFormat:
    """``responseMimeType: application/json`` → JSON mode, with a schema when
    given; ``text/x.enum`` → the answer is one of the schema's enum values."""
    mime = pick(config, "responseMimeType")
    kind = mime.split(";")[0].strip().lower() if isinstance(mime, str) else None
    if kind not in (_JSON_MIME, _ENUM_MIME):
        return ResponseFormat()
    schema = next((value for value in (pick(config, "responseJsonSchema"),
                                       pick(config, "responseSchema")) if isinstance(value, dict)),
                  None)
    if kind == _ENUM_MIME:
        return ResponseFormat(type="enum", schema={"type": "string",
                                                   "enum": _enum_values(schema)})
    if schema is None:
        return ResponseFormat(type="json_object")
    return ResponseFormat(type="json_schema", schema=json_schema(schema))


def _enum_values(schema: dict | None) -> list[str]:
    """The non-empty, distinct strings of the schema's ``enum`` (Gemini
    refuses text/x.enum without them)."""
    values = (schema or {}).get("enum")
    if (not isinstance(values, list) or not values or len(values) > MAX_ENUM_VALUES
            or not all(isinstance(v, str) and v.strip() for v in values)):
        raise InvalidRequest(
            "'generationConfig.responseSchema' must be a STRING schema with 'enum' values "
            f"(1 to {MAX_ENUM_VALUES} non-empty strings) when responseMimeType is text/x.enum",
            param="generationConfig.responseSchema")
    return list(dict.fromkeys(values))
