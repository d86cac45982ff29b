"""A ``POST /v1/responses`` body → canonical request.

Fields that steer nothing upstream (``store``, ``include``,
``prompt_cache_key``, ``client_metadata``, ``metadata``, ``truncation``,
``service_tier`` …) are accepted and left alone; tool types other than
``function`` and ``custom`` are ignored, except that a ``namespace``
contributes the tools it groups. Tools may also arrive as an
``additional_tools`` input item (Codex declares its tools so for its own
model names): they join the request's ``tools``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ds2proxy.plugin_api import ChatRequest, InvalidRequest, Message, ResolvedModel
from ds2proxy.dialects.openai_chat import parse_response_format, parse_tools
from ds2proxy.dialects.sampling import responses_sampling
from ds2proxy.dialects.thinking import thinking_override
from ds2proxy.dialects.tool_choice import parse_openai_tool_choice

from .responses_input import ADDITIONAL_TOOLS, items_to_messages


@dataclass
class ResponsesRequest:
    """The canonical request plus what the response object echoes or stores."""

    chat: ChatRequest
    items: list[Any]                 # the whole conversation, history included
    namespaces: dict[str, str] = field(default_factory=dict)   # tool name → namespace
    store: bool = True
    background: bool = False


def parse_responses_request(body: dict, model: ResolvedModel, items: list[Any]
                            ) -> ResponsesRequest:
    """``items`` is the conversation: stored history (if any) then this input."""
    sampling = responses_sampling(body)
    flat, namespaces = flatten_tools(declared_tools(body.get("tools"), items))
    tools = parse_tools(flat)
    chat = ChatRequest(
        model=model,
        messages=_messages(items, body.get("instructions"), namespaces),
        stream=body.get("stream") is True,
        tools=tools,
        tool_choice=parse_openai_tool_choice(body.get("tool_choice"), tools),
        parallel_tool_calls=body.get("parallel_tool_calls") is not False,
        thinking=thinking_override(body),
        max_tokens=body.get("max_output_tokens"),
        sampling=sampling,
        response_format=parse_response_format(_text_format(body.get("text")), "text.format"),
    )
    return ResponsesRequest(chat, items, namespaces, store=body.get("store") is not False,
                            background=body.get("background") is True)


def declared_tools(tools: Any, items: list[Any]) -> Any:
    """``tools`` plus those of every ``additional_tools`` item in the conversation
    (history resent or stored repeats the item: a name already declared is skipped)."""
    extra = [tool for item in items if isinstance(item, dict)
             and item.get("type") == ADDITIONAL_TOOLS and isinstance(item.get("tools"), list)
             for tool in item["tools"]]
    if not extra or (tools is not None and not isinstance(tools, list)):
        return tools  # a malformed ``tools`` is still refused by its own check
    merged = list(tools or [])
    seen = {_tool_key(tool) for tool in merged}
    for tool in extra:
        if _tool_key(tool) not in seen:
            seen.add(_tool_key(tool))
            merged.append(tool)
    return merged


def _tool_key(tool: Any) -> Any:
    return (tool.get("type"), tool.get("name")) if isinstance(tool, dict) else id(tool)


def flatten_tools(value: Any) -> tuple[Any, dict[str, str]]:
    """Namespaces replaced by their inner tools; also which namespace each
    came from, by the name the model knows it by: its own name, or
    ``<namespace>.<name>`` when another tool has that name too (two MCP
    servers' ``search``), so the model can tell them apart."""
    if not isinstance(value, list):
        return value, {}
    placed: list[tuple[str | None, Any]] = []  # (namespace, tool)
    for tool in value:
        inner = tool.get("tools") if isinstance(tool, dict) else None
        if isinstance(inner, list) and tool.get("type") == "namespace":
            space = tool.get("name") if isinstance(tool.get("name"), str) else None
            placed.extend((space, t) for t in inner)
        else:
            placed.append((None, tool))
    counts = Counter(name for _, tool in placed if (name := _tool_name(tool)))
    flat: list[Any] = []
    namespaces: dict[str, str] = {}
    for space, tool in placed:
        name = _tool_name(tool)
        if space is not None and name:
            if counts[name] > 1:
                name = namespaced_name(space, name)
                tool = {**tool, "name": name}
            namespaces[name] = space
        flat.append(tool)
    return flat, namespaces


def _tool_name(tool: Any) -> str | None:
    if not isinstance(tool, dict):
        return None
    fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    return fn.get("name") if isinstance(fn.get("name"), str) else None


def namespaced_name(space: str, name: str) -> str:
    """The model's name for a namespace's tool whose own name is not unique."""
    return f"{space}.{name}"


def wire_name(name: str, namespaces: dict[str, str]) -> str:
    """A tool's own name for the call item, whose ``namespace`` goes apart
    (OpenAI tool names have no dots, so a dotted one was qualified here)."""
    space = namespaces.get(name)
    return name.removeprefix(f"{space}.") if space is not None else name


def _messages(items: list[Any], instructions: Any, namespaces: dict[str, str]
              ) -> list[Message]:
    messages = items_to_messages(items, instructions, namespaces)
    if not messages and items:
        raise InvalidRequest("'input' holds no item with content to answer (a message, "
                             "input_text, a function_call_output …)", param="input")
    if not messages:
        raise InvalidRequest("request must include 'input' or 'messages'", param="input")
    return messages


def _text_format(text: Any) -> Any:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise InvalidRequest("'text' must be an object", param="text")
    return text.get("format")
