"""Anthropic Messages: request parsing and response rendering.

Shared by every plugin that serves Messages semantics (the Claude family's
routes and the web-chat surface's ``/api/v1/messages``), which is why it
lives in the core. Prompt-compat §4.3 for the input side, tool-calling §5.3
for the output side. Input is read tolerantly: coding agents send fields
this gateway has no use for (cache_control, context_management, deferred
tools …) and must never be refused for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..canonical import (
    AttachmentPart,
    ChatRequest,
    Finish,
    Message,
    Part,
    ReasoningDelta,
    ReasoningPart,
    ResolvedModel,
    ResponseFormat,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    ToolSpec,
    TurnEvent,
    TurnResult,
    Usage,
)
from ..errors import InvalidRequest, ProxyError
from ..prompt.message_text import tool_content_text
from ..thinking import thinking_override
from ..relay import relay
from ..toolcall.choice import parse_anthropic_tool_choice
from . import json_response
from .redact import redacted_json
from .sampling import anthropic_sampling
from .errors import anthropic_error_body
from .openai_chat import decode_arguments, parse_response_format
from .openai_chat import parse_tools as parse_function_tools

DEFAULT_MAX_TOKENS = 8192
STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens",
                "content_filter": "refusal"}
# Tool types a client executes itself; anything else is a server tool we cannot run.
_CLIENT_TOOL_TYPES = (None, "custom", "function")
_BASE62 = string.ascii_letters + string.digits
_SYSTEM_ROLES = ("system", "developer")

Frame = tuple[str, dict]


# --------------------------------------------------------------------------
# Ids
# --------------------------------------------------------------------------


def random_id(prefix: str, length: int = 24) -> str:
    """``prefix`` + random base-62 characters (unique across requests)."""
    return prefix + "".join(secrets.choice(_BASE62) for _ in range(length))


def tool_use_id(call_id: str) -> str:
    """A ``toolu_`` id for a call: the core's id when it already has that form."""
    return call_id if call_id.startswith("toolu_") else random_id("toolu_")


def thinking_signature(thinking: str) -> str:
    """A stable opaque signature: clients send thinking blocks back with it."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


# --------------------------------------------------------------------------
# Request parsing
# --------------------------------------------------------------------------


def parse_messages_request(body: dict, model: ResolvedModel) -> ChatRequest:
    """Messages body → canonical request (model already resolved)."""
    sampling = anthropic_sampling(body)
    tools = parse_tools(body.get("tools"))
    choice, single_call = parse_anthropic_tool_choice(body.get("tool_choice"), tools)
    return ChatRequest(
        model=model,
        messages=[*system_messages(body.get("system")), *parse_messages(body.get("messages"))],
        stream=body.get("stream") is True,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=not single_call,
        thinking=thinking_override(body),
        include_usage=True,
        max_tokens=body.get("max_tokens") or DEFAULT_MAX_TOKENS,
        sampling=sampling,
        response_format=_response_format(body),
    )


def parse_tools(value: Any) -> list[ToolSpec]:
    """Client tools (``custom`` or untyped, OpenAI-style accepted); server tools skipped."""
    if isinstance(value, list):
        value = [{**tool, "type": "function"} if isinstance(tool, dict) else tool
                 for tool in value
                 if not isinstance(tool, dict) or tool.get("type") in _CLIENT_TOOL_TYPES]
    return parse_function_tools(value)


def system_messages(value: Any) -> list[Message]:
    """Top-level ``system``: a string or text blocks, joined by blank lines."""
    if value is None:
        return []
    if not isinstance(value, (str, list, dict)):
        raise InvalidRequest("'system' must be a string or a list of text blocks",
                             param="system")
    text = _system_text(value)
    return [Message("system", [TextPart(text)])] if text.strip() else []


def _system_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    blocks = [value] if isinstance(value, dict) else value
    texts = [block if isinstance(block, str) else block.get("text") for block in blocks
             if isinstance(block, (str, dict))]
    return "\n\n".join(text for text in texts if isinstance(text, str) and text)


@dataclass
class _CallIds:
    """Call ids seen so far, to attribute tool results that lack one."""

    last_by_name: dict[str, str] = field(default_factory=dict)
    name_by_id: dict[str, str] = field(default_factory=dict)
    generated: int = 0

    def new(self) -> str:
        self.generated += 1
        return f"call_claude_{self.generated}"

    def remember(self, call: ToolCall) -> None:
        self.last_by_name[call.name] = call.id
        self.name_by_id[call.id] = call.name


def parse_messages(value: Any) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'messages' must be a non-empty list", param="messages")
    ids = _CallIds()
    messages: list[Message] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"messages[{i}] must be an object", param="messages")
        messages.append(_message(item, i, ids))
    return messages


def _message(item: dict, i: int, ids: _CallIds) -> Message:
    role = item.get("role") or "user"
    if not isinstance(role, str):
        raise InvalidRequest(f"messages[{i}].role must be a string", param="messages")
    content = item.get("content")
    if content is not None and not isinstance(content, (str, list, dict)):
        raise InvalidRequest(f"messages[{i}].content must be a string or a list of blocks",
                             param="messages")
    if role in _SYSTEM_ROLES:
        return Message("system", [TextPart(_system_text(content or ""))])
    if isinstance(content, str):
        return Message(role, [TextPart(content)] if content else [])
    blocks = [content] if isinstance(content, dict) else content or []
    return Message(role, _block_parts(role, blocks, ids))


def _block_parts(role: str, blocks: list, ids: _CallIds) -> list[Part]:
    """Blocks in order; a user message's tool results are placed first by the prompt."""
    parts: list[Part] = []
    for block in blocks:
        if isinstance(block, str):
            block = {"type": "text", "text": block}
        if isinstance(block, dict) and (part := _block_part(role, block, ids)) is not None:
            parts.append(part)
    return parts


def _block_part(role: str, block: dict, ids: _CallIds) -> Part | None:
    kind = block.get("type")
    if kind == "text" or (kind is None and isinstance(block.get("text"), str)):
        text = block.get("text")
        return TextPart(text) if isinstance(text, str) and text else None
    if kind in ("thinking", "redacted_thinking"):
        text = block.get("thinking")
        keep = role == "assistant" and kind == "thinking" and isinstance(text, str) and text
        return ReasoningPart(text) if keep else None
    if kind == "tool_use" and role == "assistant":
        return _tool_call(block, ids)
    if kind == "tool_result":
        return _tool_result(block, ids)
    if kind in ("image", "document"):
        return _media_part(block)
    # Anything else (incl. tool_use sent by a user) stays visible as its JSON text.
    return TextPart(redacted_json(block))


def _tool_call(block: dict, ids: _CallIds) -> ToolCall | TextPart:
    name = block.get("name")
    if not isinstance(name, str) or not name.strip():
        return TextPart(redacted_json(block))
    call_id = block.get("id")
    call = ToolCall(id=call_id if isinstance(call_id, str) and call_id else ids.new(),
                    name=name.strip(), arguments=decode_arguments(block.get("input")))
    ids.remember(call)
    return call


def _tool_result(block: dict, ids: _CallIds) -> ToolResult:
    name = block.get("name") if isinstance(block.get("name"), str) else None
    call_id = block.get("tool_use_id") or block.get("tool_call_id")
    if not call_id and name:
        call_id = ids.last_by_name.get(name)
    call_id = str(call_id) if call_id else ids.new()
    text, attachments = _result_content(block.get("content"))
    return ToolResult(call_id=call_id, content=text, name=name or ids.name_by_id.get(call_id),
                      is_error=block.get("is_error") is True, attachments=attachments)


def _result_content(content: Any) -> tuple[str, tuple[AttachmentPart, ...]]:
    """Text blocks as text, images and documents as attachments (a Read of a
    screenshot reaches the model as the image), other blocks as JSON."""
    if not isinstance(content, list):
        return tool_content_text(content), ()
    pieces: list[str] = []
    attachments: list[AttachmentPart] = []
    for part in content:
        if isinstance(part, dict) and part.get("type") in ("image", "document"):
            media = _media_part(part)
            if isinstance(media, TextPart):
                pieces.append(media.text)
            else:
                attachments.append(media)
        elif isinstance(part, dict) and part.get("type") not in (None, "text"):
            pieces.append(redacted_json(part))
        else:
            pieces.append(tool_content_text([part]))
    return "\n".join(piece for piece in pieces if piece), tuple(attachments)


def _media_part(block: dict) -> AttachmentPart | TextPart:
    """An image or document block; inline bytes are decoded, never put in the prompt."""
    kind = "image" if block.get("type") == "image" else "file"
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    title = block.get("title") if isinstance(block.get("title"), str) else None
    source_type = source.get("type")
    if source_type == "base64" and isinstance(source.get("data"), str):
        try:
            data = base64.b64decode(source["data"], validate=False)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"an inline {kind} could not be decoded",
                                 param="messages") from None
        return AttachmentPart(kind=kind, mime_type=source.get("media_type"), data=data,
                              name=title)
    if source_type == "url" and isinstance(source.get("url"), str):
        return AttachmentPart(kind=kind, url=source["url"], name=title)
    if source_type == "text" and isinstance(source.get("data"), str):
        return TextPart(source["data"])
    if source_type == "content":
        return TextPart(tool_content_text(source.get("content")))
    return AttachmentPart(kind=kind, name=title or source.get("file_id"))


def _response_format(body: dict) -> ResponseFormat:
    """Structured output: ``output_config.format`` (or the older ``output_format``)."""
    config = body.get("output_config") if isinstance(body.get("output_config"), dict) else {}
    fmt = config.get("format", body.get("output_format"))
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return parse_response_format(fmt)
    return ResponseFormat()


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def tool_input(arguments: str) -> Any:
    """A call's arguments (JSON text of an object) as the ``input`` object."""
    value = decode_arguments(arguments)
    return value if isinstance(value, dict) else {"input": value}


def stop_reason(reason: str, stop_sequence: str | None) -> str:
    """Anthropic's stop_reason: a matched stop sequence is its own reason."""
    return "stop_sequence" if stop_sequence else STOP_REASONS.get(reason, "end_turn")


def message_object(result: TurnResult, chat: ChatRequest, message_id: str) -> dict:
    """The non-stream ``message``: [thinking] [text when non-blank] [tool_use…]."""
    content: list[dict] = []
    if result.reasoning:
        content.append({"type": "thinking", "thinking": result.reasoning,
                        "signature": thinking_signature(result.reasoning)})
    if result.text.strip():
        content.append({"type": "text", "text": result.text})
    content += [{"type": "tool_use", "id": tool_use_id(call.id), "name": call.name,
                 "input": tool_input(call.arguments)} for call in result.calls]
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": chat.model.requested,
        "content": content,
        "stop_reason": stop_reason(result.finish, result.stop_sequence),
        "stop_sequence": result.stop_sequence,
        "usage": {"input_tokens": result.usage.prompt_tokens,
                  "output_tokens": result.usage.completion_tokens},
    }


class MessagesStreamRenderer:
    """Turn events → ``(event name, payload)`` frames (framing is the writer's).

    One content block is open at a time; indexes count up across all blocks
    and every block opened is closed before ``message_delta``.
    """

    def __init__(self, chat: ChatRequest, message_id: str, input_tokens: int) -> None:
        self.chat = chat
        self.message_id = message_id
        self.input_tokens = input_tokens
        self.started = False
        self.finished = False
        self._index = -1
        self._open: str | None = None
        self._thinking: list[str] = []
        self._calls: dict[int, int] = {}
        self._output_tokens = 0

    def frames(self, event: TurnEvent) -> list[Frame]:
        """Frames for one event."""
        out = self._start()
        if isinstance(event, ReasoningDelta) and event.text:
            out += self._delta("thinking", {"type": "thinking_delta", "thinking": event.text})
            self._thinking.append(event.text)
        elif isinstance(event, TextDelta) and event.text:
            out += self._delta("text", {"type": "text_delta", "text": event.text})
        elif isinstance(event, ToolCallStart):
            out += self._open_tool(event)
        elif isinstance(event, ToolCallArgs) and event.index in self._calls:
            out.append(("content_block_delta", {
                "type": "content_block_delta", "index": self._calls[event.index],
                "delta": {"type": "input_json_delta", "partial_json": event.arguments}}))
        elif isinstance(event, ToolCallEnd) and self._open == "tool_use" \
                and self._calls.get(event.index) == self._index:
            out += self._close()
        elif isinstance(event, Usage):
            self._output_tokens = event.completion_tokens
        elif isinstance(event, Finish):
            out += self.finish(event.reason, event.stop_sequence)
        return out

    def error(self, error: ProxyError) -> list[Frame]:
        """The in-band ``error`` event; the message is not stopped after it."""
        self.finished = True
        return [("error", anthropic_error_body(error))]

    def end(self) -> list[Frame]:
        """``message_stop`` for a turn that ended without a Finish event."""
        return self.finish()

    def finish(self, reason: str = "stop", stop_sequence: str | None = None) -> list[Frame]:
        """Close the open block, then ``message_delta`` and ``message_stop``."""
        if self.finished:
            return []
        self.finished = True
        out = self._start() + self._close()
        out.append(("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(reason, stop_sequence),
                      "stop_sequence": stop_sequence},
            "usage": {"output_tokens": self._output_tokens}}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _start(self) -> list[Frame]:
        if self.started:
            return []
        self.started = True
        message = {"id": self.message_id, "type": "message", "role": "assistant",
                   "model": self.chat.model.requested, "content": [], "stop_reason": None,
                   "stop_sequence": None,
                   "usage": {"input_tokens": self.input_tokens, "output_tokens": 0}}
        return [("message_start", {"type": "message_start", "message": message}),
                ("ping", {"type": "ping"})]

    def _delta(self, kind: str, delta: dict) -> list[Frame]:
        out: list[Frame] = []
        if self._open != kind:
            out += self._close()
            block = ({"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking"
                     else {"type": "text", "text": ""})
            out.append(self._open_block(kind, block))
        out.append(("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                            "delta": delta}))
        return out

    def _open_tool(self, event: ToolCallStart) -> list[Frame]:
        out = self._close()
        out.append(self._open_block("tool_use", {"type": "tool_use", "id": tool_use_id(event.id),
                                                 "name": event.name, "input": {}}))
        self._calls[event.index] = self._index
        return out

    def _open_block(self, kind: str, block: dict) -> Frame:
        self._index += 1
        self._open = kind
        return ("content_block_start", {"type": "content_block_start", "index": self._index,
                                        "content_block": block})

    def _close(self) -> list[Frame]:
        if self._open is None:
            return []
        out: list[Frame] = []
        if self._open == "thinking":
            signature = thinking_signature("".join(self._thinking))
            out.append(("content_block_delta", {
                "type": "content_block_delta", "index": self._index,
                "delta": {"type": "signature_delta", "signature": signature}}))
            self._thinking = []
        out.append(("content_block_stop", {"type": "content_block_stop", "index": self._index}))
        self._open = None
        return out


async def respond_messages(core: Any, request: web.Request, turn: Any,
                           chat: ChatRequest, message_id: str | None = None
                           ) -> web.StreamResponse:
    """Answer a Messages request from an open turn, stream or not
    (``message_id``: a surface's own id shape, else ``msg_…``)."""
    message_id = message_id or random_id("msg_")
    if not chat.stream:
        result = await turn.collect()
        return json_response(message_object(result, chat, message_id))
    renderer = MessagesStreamRenderer(chat, message_id, turn.prompt_tokens)
    return await relay(core.sse(request), turn, renderer)
