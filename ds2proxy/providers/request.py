"""The canonical request as an OpenAI ``/chat/completions`` body.

Messages, tools and tool_choice, sampling, stop sequences, max tokens and the
response format travel natively; reasoning a client sends back is dropped
(OpenAI-compatible APIs refuse or ignore it in the input). Anything the wire
cannot carry is a 400 here, before the provider is called.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ..canonical import (
    AttachmentPart,
    ChatRequest,
    Message,
    TextPart,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
)
from ..errors import InvalidRequest
from ..structured import format_instructions

# Canonical sampling names an OpenAI-compatible API takes as they are.
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "stop")
CUSTOM_INPUT = "input"  # the one string parameter a free-form (custom) tool becomes
# The two names OpenAI-compatible APIs take the output limit under.
LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")
_REFUSAL_WORDS = ("unsupported", "not supported", "unrecognized", "unknown", "not permitted",
                  "not allowed", "extra")
# How a provider says it has no json_schema mode (DeepSeek: "This
# response_format type is unavailable now"; others: "… is not supported").
_UNAVAILABLE_WORDS = (*_REFUSAL_WORDS, "unavailable", "not available", "invalid value",
                      "must be one of", "should be one of")


def chat_body(chat: ChatRequest, model: str, *, stream: bool,
              limit_field: str = "max_tokens") -> dict[str, Any]:
    """The provider request for ``chat`` sent to ``model``; the output limit
    goes under ``limit_field``."""
    body: dict[str, Any] = {"model": model, "stream": stream,
                            "messages": _with_system(messages(chat.messages), _asked(chat))}
    if stream:
        body["stream_options"] = {"include_usage": True}
    body.update((name, chat.sampling[name]) for name in SAMPLING if name in chat.sampling)
    if chat.max_tokens is not None:
        body[limit_field] = chat.max_tokens
    tools = [t for t in chat.tools if _allowed(t, chat.tool_choice)]
    if tools and chat.tool_choice.mode != "none":
        body["tools"] = [tool(t) for t in tools]
        body["tool_choice"] = tool_choice(chat.tool_choice)
        if not chat.parallel_tool_calls:
            body["parallel_tool_calls"] = False
    form = response_format(chat)
    if form is not None:
        body["response_format"] = form
    return body


def refused_limit_field(body: dict[str, Any], message: str) -> str | None:
    """The other limit name when a provider's 400 refused the one ``body``
    sent, else None. OpenAI's reasoning models answer ``max_tokens`` with
    "Unsupported parameter: 'max_tokens' … Use 'max_completion_tokens'
    instead"; an older API may not know ``max_completion_tokens``. A 400
    about the limit's value (a range) names only the field sent: not a swap."""
    sent = next((name for name in LIMIT_FIELDS if name in body), None)
    if sent is None:
        return None
    other = LIMIT_FIELDS[1 - LIMIT_FIELDS.index(sent)]
    text = message.lower()
    if sent == "max_tokens":
        return other if other in text else None
    return other if sent in text and any(word in text for word in _REFUSAL_WORDS) else None


def with_limit_field(body: dict[str, Any], name: str) -> dict[str, Any]:
    """``body`` with its output limit under ``name``."""
    out = {key: value for key, value in body.items() if key not in LIMIT_FIELDS}
    limit = next((body[key] for key in LIMIT_FIELDS if key in body), None)
    if limit is not None:
        out[name] = limit
    return out


def refused_json_schema(body: dict[str, Any], message: str) -> bool:
    """Did a provider's 400 refuse the json_schema ``response_format`` the
    body sent (rather than something else in the request)?"""
    if (body.get("response_format") or {}).get("type") != "json_schema":
        return False
    text = message.lower()
    return (("response_format" in text or "json_schema" in text or "response format" in text)
            and any(word in text for word in _UNAVAILABLE_WORDS))


def as_json_object(body: dict[str, Any], chat: ChatRequest) -> dict[str, Any]:
    """``body`` asking for JSON mode, its schema described in the system
    message instead: for a provider without a json_schema mode. The answer
    is still checked against the schema when it is settled."""
    return {**body, "response_format": {"type": "json_object"},
            "messages": _with_system(body["messages"], format_instructions(chat.response_format))}


def _allowed(spec: ToolSpec, choice: ToolChoice) -> bool:
    return choice.allowed is None or spec.name in choice.allowed


def tool(spec: ToolSpec) -> dict[str, Any]:
    """A function tool; a free-form tool becomes one taking a single string."""
    parameters = spec.parameters or {"type": "object", "properties": {}}
    if spec.kind == "custom":
        parameters = {"type": "object", "properties": {CUSTOM_INPUT: {"type": "string"}},
                      "required": [CUSTOM_INPUT]}
    function: dict[str, Any] = {"name": spec.name, "parameters": parameters}
    if spec.description:
        function["description"] = spec.description
    return {"type": "function", "function": function}


def tool_choice(choice: ToolChoice) -> Any:
    if choice.mode == "forced" and choice.name:
        return {"type": "function", "function": {"name": choice.name}}
    return "required" if choice.mode == "required" else "auto"


def response_format(chat: ChatRequest) -> dict[str, Any] | None:
    form = chat.response_format
    if form.type == "json_object":
        return {"type": "json_object"}
    if form.type == "json_schema":
        return {"type": "json_schema", "json_schema": {
            "name": form.name or "response", "schema": form.schema or {"type": "object"}}}
    return None


def _asked(chat: ChatRequest) -> str:
    """What the prompt must ask for that no field can: an enum answer (the
    chat API's json_schema wants an object at its root), and JSON mode when
    no message says "JSON" (OpenAI refuses json_object then, others may
    stream blanks to the limit; Gemini and Ollama clients are not told so)."""
    form = chat.response_format
    if form.type == "json_object" and not any(
            "json" in m.text.lower() for m in chat.messages):
        return format_instructions(form)
    return format_instructions(form) if form.type == "enum" else ""


def _with_system(items: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """``items`` with ``text`` added to the leading system message, or in a
    new one first (some chat templates refuse a second system message)."""
    if not text:
        return items
    if items and items[0]["role"] == "system" and isinstance(items[0]["content"], str):
        return [{**items[0], "content": f"{items[0]['content']}\n\n{text}"}, *items[1:]]
    return [{"role": "system", "content": text}, *items]


# -- messages ------------------------------------------------------------------------


def messages(items: list[Message]) -> list[dict[str, Any]]:
    """Canonical messages as OpenAI messages; tool results become ``tool``
    messages wherever a dialect put them."""
    out: list[dict[str, Any]] = []
    for message in items:
        out.extend(_tool_message(r) for r in message.tool_results)
        if message.role == "tool":
            continue
        if message.role == "assistant":
            out.append(_assistant(message))
        elif any(isinstance(p, (TextPart, AttachmentPart)) for p in message.parts):
            out.append({"role": message.role, "content": _content(message)})
    return out


def _assistant(message: Message) -> dict[str, Any]:
    item: dict[str, Any] = {"role": "assistant", "content": message.text or None}
    if message.tool_calls:
        item["tool_calls"] = [_call(c) for c in message.tool_calls]
    return item


def _call(call: ToolCall) -> dict[str, Any]:
    arguments = call.arguments
    if call.kind == "custom":
        arguments = {CUSTOM_INPUT: arguments if isinstance(arguments, str)
                     else json.dumps(arguments)}
    text = arguments if isinstance(arguments, str) else json.dumps(arguments,
                                                                   ensure_ascii=False)
    return {"id": call.id, "type": "function", "function": {"name": call.name,
                                                            "arguments": text}}


def _tool_message(result: ToolResult) -> dict[str, Any]:
    content = result.content
    for attachment in result.attachments:
        content += f"\n[attached {attachment.kind}: {attachment.name or 'unnamed'}]"
    return {"role": "tool", "tool_call_id": result.call_id, "content": content}


def _content(message: Message) -> str | list[dict[str, Any]]:
    """Plain text when the message is text only, else content parts."""
    if not message.attachments:
        return message.text
    parts: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, AttachmentPart):
            parts.append(_attachment(part))
    return parts


def _attachment(part: AttachmentPart) -> dict[str, Any]:
    if part.kind == "image" and (part.url or part.data is not None):
        url = part.url or (f"data:{part.mime_type or 'image/png'};base64,"
                           + base64.b64encode(part.data or b"").decode())
        return {"type": "image_url", "image_url": {"url": url}}
    text = _utf8(part.data)
    if text is not None:
        return {"type": "text", "text": f"[file {part.name or 'attachment'}]\n{text}"}
    raise InvalidRequest("this model's provider takes images and text files only; "
                         f"the attachment {part.name or part.file_id or ''!r} cannot be sent",
                         param="messages")


def _utf8(data: bytes | None) -> str | None:
    """The text of a UTF-8 file; None for no data or binary data."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
