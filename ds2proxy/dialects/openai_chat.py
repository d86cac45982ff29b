"""OpenAI Chat Completions: request parsing and response rendering.

Shared by every plugin that speaks chat-completions semantics (``/v1``,
``/api/v1``, ``/lm/v2``), which is why it lives in the dialect layer:
plugins never import each other. Prompt-compat §4.1 for the input side, tool-calling §5.1
for tool calls on the output side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..canonical import (
    ChatRequest,
    Citation,
    Message,
    Part,
    ReasoningPart,
    ResolvedModel,
    TextPart,
    ToolCall,
    ToolCallEnd,
    ToolResult,
    TurnResult,
    Usage,
)
from ..errors import InvalidRequest
from .chat_attachments import file_part, image_part, result_media
from .legacy_functions import as_tools, uses_functions
from .thinking import thinking_override
from .tool_choice import parse_openai_tool_choice
from .sampling import openai_chat_sampling
from .tool_specs import parse_response_format, parse_tools
from .validate import boolean, objects



# --------------------------------------------------------------------------
# Shared input helpers (also used for Responses input)
# --------------------------------------------------------------------------


def decode_arguments(value: Any) -> Any:
    """Tool-call arguments as sent: JSON text is decoded, anything else kept."""
    if isinstance(value, str):
        try:
            return orjson.loads(value) if value.strip() else {}
        except orjson.JSONDecodeError:
            return value
    return {} if value is None else value


def arguments_object(arguments: str) -> dict[str, Any]:
    """A call's arguments as the object families that take only objects
    (Anthropic ``input``, Gemini ``args``, Ollama ``arguments``) send: JSON
    ``null`` (or nothing) is no arguments, ``{}``; any other non-object value
    is wrapped as ``{"input": value}``."""
    value = decode_arguments(arguments)
    if value is None:
        return {}
    return value if isinstance(value, dict) else {"input": value}


def content_text(value: Any) -> str:
    """Text of a tool result or message content in any of its forms."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in (
                    "text", "input_text", "output_text", None) and isinstance(
                    part.get("text"), str):
                texts.append(part["text"])
        return "\n".join(texts)
    return orjson.dumps(value).decode()


def user_parts(content: Any, where: str = "content") -> list[Part]:
    """User/system content: a string or a list of typed parts. ``where`` names
    the content in errors (``messages[2].content``): a part that is not an
    object, or a text part whose text is not a string, is a 400."""
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}' must be a string or a list of parts", param=where)
    parts: list[Part] = []
    for index, item in enumerate(content):
        if isinstance(item, str):
            parts.append(TextPart(item))
            continue
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{where}[{index}]' must be an object",
                                 param=f"{where}[{index}]")
        kind = item.get("type")
        if kind in ("text", "input_text", "output_text") or (kind is None and "text" in item):
            parts.append(TextPart(_part_text(item, f"{where}[{index}]")))
        elif kind in ("image_url", "input_image"):
            parts.append(image_part(item, f"{where}[{index}]"))
        elif kind in ("file", "input_file"):
            parts.append(file_part(item, f"{where}[{index}]"))
        elif kind in ("reasoning", "thinking"):
            text = item.get("text") or item.get("thinking") or ""
            if isinstance(text, str) and text:
                parts.append(ReasoningPart(text))
        elif kind == "redacted_thinking":
            pass  # reasoning only its provider can read: dropped, as for Anthropic
        elif kind == "refusal":
            if isinstance(item.get("refusal"), str):  # what the assistant said, in its words
                parts.append(TextPart(item["refusal"]))
        else:
            raise unreadable_part(kind, f"{where}[{index}]")
    return parts


# Content part kinds :func:`user_parts` reads (Chat's and Responses' names).
PART_KINDS = ("text", "image_url", "file", "refusal", "input_text", "input_image",
              "input_file", "output_text")
# Media the web chat cannot take (OpenAI's audio, other servers' video parts).
UNREADABLE_MEDIA = ("input_audio", "audio", "video_url", "input_video", "video")


def unreadable_part(kind: Any, where: str) -> InvalidRequest:
    """A part this server cannot read is a 400 naming it, as the official APIs
    refuse a part their model cannot take: skipped, the model answered a turn
    it never saw (an audio question answered as '(nothing)')."""
    field = f"{where}.type"
    if kind in UNREADABLE_MEDIA:
        return InvalidRequest(f"'{where}' is {kind}: this server cannot read audio or video",
                              param=field, code="unsupported_value")
    if kind is None:
        return InvalidRequest(f"'{field}' is required", param=field)
    return InvalidRequest(f"'{field}' must be one of: {', '.join(PART_KINDS)} "
                          f"(got '{str(kind)[:40]}')", param=field, code="invalid_value")


def _part_text(item: dict, where: str) -> str:
    """A text part's text (``content`` in older clients); missing or not a
    string → 400, as the API answers (a missing one made a turn of nothing)."""
    text = item.get("text")
    if text is None:
        text = item.get("content")
    if text is None:
        raise InvalidRequest(f"'{where}.text' is required", param=f"{where}.text")
    if not isinstance(text, str):
        raise InvalidRequest(f"'{where}.text' must be a string", param=f"{where}.text")
    return text


def tool_call_from(item: dict, fallback_id: str) -> ToolCall | None:
    """An OpenAI ``tool_calls`` entry (or legacy ``function_call``); a custom
    tool's call (``{"type": "custom", "custom": {name, input}}``) keeps its
    free-form input as the text it is."""
    kind = "custom" if item.get("type") == "custom" else "function"
    inner = item.get("custom") if kind == "custom" else item.get("function")
    fn = inner if isinstance(inner, dict) else item
    name = fn.get("name") or item.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    raw = fn.get("arguments", fn.get("input", item.get("arguments", item.get("input"))))
    call_id = item.get("id") or item.get("call_id") or fallback_id
    arguments = (raw if isinstance(raw, str) else content_text(raw)) if kind == "custom" \
        else decode_arguments(raw)
    return ToolCall(id=str(call_id), name=name.strip(), arguments=arguments, kind=kind)


# --------------------------------------------------------------------------
# Chat request parsing
# --------------------------------------------------------------------------


# The roles OpenAI accepts (a missing role reads as "user").
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def parse_messages(value: Any) -> list[Message]:
    messages: list[Message] = []
    for i, item in objects(value, "messages"):
        messages.extend(parse_message(item, i, f"messages[{i}]"))
    return messages


def parse_message(item: dict, i: int, where: str) -> list[Message]:
    """One chat message; ``where`` names it in errors (``messages[3]``)."""
    role = item.get("role") or "user"
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidRequest(f"'{where}.role' must be one of: {', '.join(ROLES)}",
                             param=f"{where}.role")
    content = item.get("content")
    if role in ("system", "developer"):
        _text_parts_only(content, f"{where}.content", role)
        return [Message("system", [TextPart(_plain_text(content, f"{where}.content"))])]
    if role in ("tool", "function"):
        call_id = item.get("tool_call_id") or item.get("name") or f"call_{i}"
        result = ToolResult(call_id=str(call_id), content=_plain_text(content, f"{where}.content"),
                            name=item.get("name"),
                            attachments=result_media(content, f"{where}.content"))
        return [Message("tool", [result])]
    if role == "assistant":
        return [_assistant(item, i, where)]
    if content is None:
        raise InvalidRequest(f"'{where}.content' is required for a user message",
                             param=f"{where}.content")
    if content == []:
        raise InvalidRequest(f"'{where}.content' must not be an empty list",
                             param=f"{where}.content")
    return [Message(role, user_parts(content, f"{where}.content"))]


def _assistant(item: dict, i: int, where: str) -> Message:
    parts: list[Part] = []
    reasoning = item.get("reasoning_content") or item.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(ReasoningPart(reasoning))
    parts.extend(user_parts(item.get("content"), f"{where}.content"))
    refusal = item.get("refusal")
    if isinstance(refusal, str) and refusal.strip() and not any(
            isinstance(p, TextPart) and p.text.strip() for p in parts):
        parts.append(TextPart(refusal))  # a refused turn is a turn: never dropped
    calls = item.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise InvalidRequest(f"'{where}.tool_calls' must be a list", param=f"{where}.tool_calls")
    for n, call in enumerate(calls or []):
        field = f"{where}.tool_calls[{n}]"
        if not isinstance(call, dict):
            raise InvalidRequest(f"'{field}' must be an object", param=field)
        if (tc := tool_call_from(call, f"call_{i}_{n}")) is None:
            kind = "custom" if call.get("type") == "custom" else "function"
            raise InvalidRequest(f"'{field}.{kind}.name' must be a non-empty string",
                                 param=f"{field}.{kind}.name")
        parts.append(tc)
    legacy = item.get("function_call")
    fallback = f"call_{i}_{len(calls or [])}"
    if isinstance(legacy, dict) and (tc := tool_call_from(legacy, fallback)):
        parts.append(tc)
    return Message("assistant", parts)


def _text_parts_only(content: Any, where: str, role: str) -> None:
    """Chat's instructions are text: an image or file part in a system or
    developer message is a 400, as the API answers, not dropped unseen.
    (Responses' own part kinds are left to its reader.)"""
    for index, part in enumerate(content if isinstance(content, list) else []):
        kind = part.get("type", "text") if isinstance(part, dict) else "text"
        if kind not in ("text", "input_text", "input_image", "input_file"):
            field = f"{where}[{index}].type"
            raise InvalidRequest(f"'{field}' must be text in a {role} message "
                                 f"(got '{str(kind)[:40]}')", param=field, code="invalid_value")


def _plain_text(content: Any, where: str) -> str:
    """System and tool content as text: a string, parts or an object; a number
    or a part that is neither text nor an object is a 400 naming ``where``."""
    if content is not None and not isinstance(content, str | list | dict):
        raise InvalidRequest(f"'{where}' must be a string or a list of parts", param=where)
    for index, part in enumerate(content if isinstance(content, list) else []):
        if not isinstance(part, str | dict):
            raise InvalidRequest(f"'{where}[{index}]' must be an object",
                                 param=f"{where}[{index}]")
    return content_text(content)


def parse_chat_request(body: dict, model: ResolvedModel) -> ChatRequest:
    """OpenAI chat body → canonical request (model already resolved)."""
    sampling = openai_chat_sampling(body)
    legacy = uses_functions(body)
    tools_value, choice_value = as_tools(body) if legacy else (
        body.get("tools"), body.get("tool_choice"))
    tools = parse_tools(tools_value)
    choice = parse_openai_tool_choice(choice_value, tools)
    stream_options = body.get("stream_options") or {}
    include_usage = boolean(stream_options.get("include_usage"),
                            "stream_options.include_usage")
    return ChatRequest(
        model=model,
        messages=parse_messages(body.get("messages")),
        stream=body.get("stream") is True,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=body.get("parallel_tool_calls") is not False and not legacy,
        thinking=thinking_override(body),
        include_usage=bool(include_usage),
        max_tokens=_first(body.get("max_completion_tokens"), body.get("max_tokens")),
        sampling=sampling,
        response_format=parse_response_format(body.get("response_format")),
    )


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def usage_body(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _annotations(citations: list[Citation]) -> list[dict]:
    return [{"type": "url_citation", "url_citation": {"url": c.url, "title": c.title,
                                                      "start_index": 0, "end_index": 0}}
            for c in citations]


@dataclass
class ChatStyle:
    """Per-surface variations of the chat shape (``/lm/v2``, ``/api/v1``)."""

    reasoning_inline: bool = False        # <think>…</think> before the answer
    finish_names: dict[str, str] = field(default_factory=dict)
    chunk_logprobs: bool = False          # every chunk choice carries "logprobs": null
    usage_on_every_chunk: bool = True     # "usage": null on chunks before the last
    opening_chunk: bool = False           # a {"role","content":""} chunk before any output
    content_always: bool = False          # every delta has "content" ("" when it has none)
    usage_in_finish_chunk: bool = False   # include_usage: usage rides the finish chunk
    whole_id: Callable[[str], str] | None = None    # turn id → the non-stream object's id
    chunk_id: Callable[[str], str] | None = None    # turn id → the stream chunks' id
    usage_shape: Callable[[Usage], dict] | None = None  # the surface's usage object
    legacy_functions: bool = False        # one call, as message.function_call

    def usage(self, usage: Usage) -> dict:
        return (self.usage_shape or usage_body)(usage)


def finish_name(style: ChatStyle, reason: str, stop_sequence: str | None = None) -> str:
    """The surface's finish word; a matched stop sequence is always "stop"."""
    return "stop" if stop_sequence else style.finish_names.get(reason, reason)


def call_entry(call_id: str, name: str, arguments: str, kind: str) -> dict[str, Any]:
    """One ``tool_calls`` entry: a function's JSON arguments, or a custom
    tool's free-form ``input`` under ``custom``, as Chat Completions has them."""
    if kind == "custom":
        return {"id": call_id, "type": "custom", "custom": {"name": name, "input": arguments}}
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}


def _inline_text(result: TurnResult) -> str:
    return f"<think>\n{result.reasoning}\n</think>\n\n{result.text}" if result.reasoning \
        else result.text


def chat_completion(result: TurnResult, chat: ChatRequest, created: int,
                    style: ChatStyle | None = None) -> dict:
    """The non-stream ``chat.completion`` object."""
    style = style or ChatStyle()
    message: dict[str, Any] = {"role": "assistant"}
    if style.reasoning_inline:
        message["content"] = None if result.calls else _inline_text(result)
    else:
        message["content"] = None if result.calls else result.text
        if result.reasoning:
            message["reasoning_content"] = result.reasoning
    if result.calls and style.legacy_functions:
        first = result.calls[0]
        message["function_call"] = {"name": first.name, "arguments": first.arguments}
    elif result.calls:
        message["tool_calls"] = [call_entry(c.id, c.name, c.arguments, c.kind)
                                 for c in result.calls]
    if result.citations:
        message["annotations"] = _annotations(result.citations)
    return {
        "id": style.whole_id(result.id) if style.whole_id else result.id,
        "object": "chat.completion",
        "created": created,
        "model": chat.model.requested,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_name(style, result.finish,
                                              result.stop_sequence)}],
        "usage": style.usage(result.usage),
        "system_fingerprint": None,
    }
