"""Anthropic Messages requests → the canonical ChatRequest.

Prompt-compat §4.3. Input is read tolerantly: coding agents send fields
this gateway has no use for (cache_control, context_management, deferred
tools …) and must never be refused for them. Shared by every plugin that
serves Messages semantics (see :mod:`.anthropic_messages` for the output).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, replace
from typing import Any

from ..canonical import (
    AttachmentPart,
    ChatRequest,
    Message,
    Part,
    ReasoningPart,
    ResolvedModel,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolResult,
    ToolSpec,
)
from ..errors import InvalidRequest
from .anthropic_search import search_result_lines
from .anthropic_tools import AnthropicTools, parse_anthropic_tools, web_search_name
from .content import inline_bytes, tool_content_text
from .openai_chat import decode_arguments, parse_response_format
from .redact import redacted_json
from .sampling import anthropic_sampling
from .thinking import thinking_override
from .tool_choice import parse_anthropic_tool_choice
from .tool_specs import repeated_name
from .validate import INT32_MAX, Bounds, integer, objects

DEFAULT_MAX_TOKENS = 8192
BUDGET = "thinking.budget_tokens"
MIN_BUDGET = 1024  # Anthropic's floor for a thinking budget
_SYSTEM_ROLES = ("system", "developer")
# Anthropic's two roles; system / developer turns are taken too (folded into the system prompt).
_ROLES = ("user", "assistant", *_SYSTEM_ROLES)


def parse_messages_request(body: dict, model: ResolvedModel, *,
                           interleaved: bool = False) -> ChatRequest:
    """Messages body → canonical request (model already resolved);
    ``interleaved``: the client sent the interleaved-thinking beta."""
    sampling = anthropic_sampling(body)
    thinking_omitted(body)  # checked here, applied by the renderer
    declared = parse_anthropic_tools(body.get("tools"))
    tools = declared.client
    if repeated_name(tools) is not None or any(t.name in declared.server for t in tools):
        raise InvalidRequest("tools: Tool names must be unique.", param="tools")
    choice, single_call = parse_anthropic_tool_choice(body.get("tool_choice"), tools,
                                                      server=declared.server)
    return ChatRequest(
        model=_searching(model, declared, body.get("tool_choice")),
        messages=[*system_messages(body.get("system")), *parse_messages(body.get("messages"))],
        stream=body.get("stream") is True,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=not single_call,
        thinking=_thinking(body, interleaved),
        include_usage=True,
        max_tokens=body.get("max_tokens") or DEFAULT_MAX_TOKENS,
        sampling=sampling,
        response_format=_response_format(body),
    )


def searched_tool(body: dict, chat: ChatRequest) -> str | None:
    """The declared web search tool a turn's search ran for: its pages are
    answered as that tool's blocks (see :mod:`.anthropic_search`)."""
    return web_search_name(body.get("tools")) if chat.model.search else None


def _searching(model: ResolvedModel, declared: AnthropicTools,
               tool_choice: Any) -> ResolvedModel:
    """The model with the web chat's own search on when a web search server
    tool is declared and may be used: that search is what the tool would
    run (the tool's domain and use limits cannot be passed on). Not when
    tool_choice is none or forces another tool."""
    if declared.web_search is None or model.search:
        return model
    kind = tool_choice.get("type") if isinstance(tool_choice, dict) else None
    if kind == "none" or (kind == "tool" and tool_choice.get("name") != declared.web_search):
        return model
    return replace(model, search=True)


def _thinking(body: dict, interleaved: bool) -> bool | None:
    """The thinking switch (read as every dialect reads it), with Claude's
    ``thinking.budget_tokens`` checked as Anthropic checks it when given: an
    integer of at least 1024, below ``max_tokens`` (the beta of interleaved
    thinking lets the budget span a whole turn's blocks, so beyond it).

    The budget is not applied: the web chat's reasoning cannot be steered,
    and cutting the thought shown would only hide reasoning that still ran
    and still shaped the answer. Anthropic documents the budget as a target
    the model may not reach, and ``max_tokens`` still bounds the whole reply."""
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        budget = integer(thinking.get("budget_tokens"), BUDGET, Bounds(MIN_BUDGET, INT32_MAX))
        limit = body.get("max_tokens")
        if budget is not None and isinstance(limit, int) and budget >= limit and not interleaved:
            raise InvalidRequest(f"'max_tokens' must be greater than '{BUDGET}'", param=BUDGET)
    return thinking_override(body)


_DISPLAYS = ("summarized", "omitted", "updates")
# A signature that carries its block's reasoning (thinking.display "omitted").
_CARRIER = "ds2r1:"


def thinking_omitted(body: dict) -> bool:
    """Does ``thinking.display`` ask for thinking blocks without their text?
    Anthropic's "omitted" (Claude Code sends it on every turn) returns each
    thinking block with an empty ``thinking`` and a signature that carries
    the reasoning; "updates" shows only progress notes between tool calls,
    which the web chat does not write. Another value is a 400 naming it."""
    thinking = body.get("thinking")
    display = thinking.get("display") if isinstance(thinking, dict) else None
    if display is not None and display not in _DISPLAYS:
        raise InvalidRequest(f"'thinking.display' must be one of: {', '.join(_DISPLAYS)}",
                             param="thinking.display")
    return display in ("omitted", "updates")


def carried_signature(thinking: str) -> str:
    """A signature that carries ``thinking`` whole, for a block shown without
    it: the client sends the block back as it got it, and the reasoning
    reaches the next turn's prompt as shown text would."""
    return _CARRIER + base64.b64encode(thinking.encode()).decode()


def carried_thinking(signature: Any) -> str:
    """The reasoning a carrying signature holds; "" for any other signature
    (Anthropic's own, this gateway's hash of shown text, garbage)."""
    if not isinstance(signature, str) or not signature.startswith(_CARRIER):
        return ""
    try:
        return base64.b64decode(signature[len(_CARRIER):], validate=True).decode()
    except (binascii.Error, ValueError):
        return ""


def interleaved_thinking(beta: str | None) -> bool:
    """Does an ``anthropic-beta`` header name the interleaved-thinking beta?"""
    return bool(beta) and any(name.strip().startswith("interleaved-thinking")
                              for name in beta.split(","))


def parse_tools(value: Any) -> list[ToolSpec]:
    """The tools the model may call (see :mod:`.anthropic_tools`); server tools skipped."""
    return parse_anthropic_tools(value).client


def system_messages(value: Any) -> list[Message]:
    """Top-level ``system``: a string or text blocks, joined by blank lines."""
    if value is None:
        return []
    if not isinstance(value, (str, list, dict)):
        raise InvalidRequest("'system' must be a string or a list of text blocks",
                             param="system")
    blocks = value if isinstance(value, list) else []
    for index, block in enumerate(blocks):
        if not isinstance(block, str) and not (isinstance(block, dict)
                                               and isinstance(block.get("text"), str)):
            raise InvalidRequest(f"'system[{index}]' must be a text block",
                                 param=f"system[{index}]")
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
    ids = _CallIds()
    return [_message(item, i, ids) for i, item in objects(value, "messages")]


def _message(item: dict, i: int, ids: _CallIds) -> Message:
    role = item.get("role") or "user"
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequest(f"'messages[{i}].role' must be one of: user, assistant",
                             param=f"messages[{i}].role")
    content = item.get("content")
    if content is None and role == "user":
        raise InvalidRequest(f"'messages[{i}].content' is required", param=f"messages[{i}].content")
    if role == "user" and (content in ("", []) or _only_empty_text(content)):
        # Anthropic's own rule: only a final assistant message may be empty.
        raise InvalidRequest(f"'messages[{i}].content' must not be empty: only the final "
                             "assistant message may be", param=f"messages[{i}].content")
    if content is not None and not isinstance(content, (str, list, dict)):
        raise InvalidRequest(f"messages[{i}].content must be a string or a list of blocks",
                             param="messages")
    if role in _SYSTEM_ROLES:
        return Message("system", [TextPart(_system_text(content or ""))])
    if isinstance(content, str):
        return Message(role, [TextPart(content)] if content else [])
    blocks = [content] if isinstance(content, dict) else content or []
    return Message(role, _block_parts(role, blocks, ids, f"messages[{i}].content"))


def _only_empty_text(content: Any) -> bool:
    """Blocks that are all text blocks with empty text: nothing to answer."""
    blocks = [content] if isinstance(content, dict) else content
    return isinstance(blocks, list) and bool(blocks) and all(
        isinstance(block, dict) and block.get("type") == "text" and block.get("text") == ""
        for block in blocks)


def _block_parts(role: str, blocks: list, ids: _CallIds, where: str) -> list[Part]:
    """Blocks in order; a user message's tool results are placed first by the prompt.
    A block that is not an object, or a text block without string text, is a 400."""
    parts: list[Part] = []
    for index, block in enumerate(blocks):
        if isinstance(block, str):
            block = {"type": "text", "text": block}
        if not isinstance(block, dict):
            raise InvalidRequest(f"'{where}[{index}]' must be an object",
                                 param=f"{where}[{index}]")
        if block.get("type") == "text" and not isinstance(block.get("text"), str):
            raise InvalidRequest(f"'{where}[{index}].text' must be a string",
                                 param=f"{where}[{index}].text")
        if (part := _block_part(role, block, ids, f"{where}[{index}]")) is not None:
            parts.append(part)
    return parts


def _block_part(role: str, block: dict, ids: _CallIds, where: str) -> Part | None:
    kind = block.get("type")
    if kind == "text" or (kind is None and isinstance(block.get("text"), str)):
        text = block.get("text")
        return TextPart(text) if isinstance(text, str) and text else None
    if kind in ("thinking", "redacted_thinking"):
        text = block.get("thinking")
        if not (isinstance(text, str) and text) and kind == "thinking":
            text = carried_thinking(block.get("signature"))
        keep = role == "assistant" and kind == "thinking" and isinstance(text, str) and text
        return ReasoningPart(text) if keep else None
    if kind == "tool_use" and role == "assistant":
        return _tool_call(block, ids)
    if kind == "tool_result":
        return _tool_result(block, ids, where)
    if kind in ("image", "document"):
        return _media_part(block, where)
    if kind == "search_result":
        return TextPart(search_result_text(block))
    if kind == "web_search_tool_result" and role == "assistant":
        return TextPart(search_result_lines(block))
    if kind == "server_tool_use" and role == "assistant":
        return None  # its result block says what the search found
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


def _tool_result(block: dict, ids: _CallIds, where: str) -> ToolResult:
    name = block.get("name") if isinstance(block.get("name"), str) else None
    call_id = block.get("tool_use_id") or block.get("tool_call_id")
    if not call_id and name:
        call_id = ids.last_by_name.get(name)
    call_id = str(call_id) if call_id else ids.new()
    text, attachments = _result_content(block.get("content"), f"{where}.content")
    return ToolResult(call_id=call_id, content=text, name=name or ids.name_by_id.get(call_id),
                      is_error=block.get("is_error") is True, attachments=attachments)


def _result_content(content: Any, where: str) -> tuple[str, tuple[AttachmentPart, ...]]:
    """Text blocks as text, images and documents as attachments (a Read of a
    screenshot reaches the model as the image), other blocks as JSON."""
    if not isinstance(content, list):
        return tool_content_text(content), ()
    pieces: list[str] = []
    attachments: list[AttachmentPart] = []
    for index, part in enumerate(content):
        if isinstance(part, dict) and part.get("type") in ("image", "document"):
            media = _media_part(part, f"{where}[{index}]")
            if isinstance(media, TextPart):
                pieces.append(media.text)
            else:
                attachments.append(media)
        elif isinstance(part, dict) and part.get("type") == "search_result":
            pieces.append(search_result_text(part))
        elif isinstance(part, dict) and part.get("type") not in (None, "text"):
            pieces.append(redacted_json(part))
        else:
            pieces.append(tool_content_text([part]))
    return "\n".join(piece for piece in pieces if piece), tuple(attachments)


def search_result_text(block: dict) -> str:
    """A ``search_result`` block (the content a RAG tool returns for the model
    to cite) as its title, source and whole text: written as JSON, each text
    was cut at 1 KB like any unknown block."""
    head = " - ".join(value for value in (block.get("title"), block.get("source"))
                      if isinstance(value, str) and value)
    body = tool_content_text(block.get("content"))
    return f"[search result: {head}]\n{body}" if head else body


def _media_part(block: dict, where: str) -> AttachmentPart | TextPart:
    """An image or document block; inline bytes are decoded, never put in the prompt."""
    kind = "image" if block.get("type") == "image" else "file"
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    title = block.get("title") if isinstance(block.get("title"), str) else None
    source_type = source.get("type")
    if source_type == "base64" and isinstance(source.get("data"), str):
        data = inline_bytes(source["data"], f"{where}.source.data")
        return AttachmentPart(kind=kind, mime_type=source.get("media_type"), data=data,
                              name=title)
    if source_type == "url" and isinstance(source.get("url"), str):
        return AttachmentPart(kind=kind, url=source["url"], name=title)
    if source_type == "text" and isinstance(source.get("data"), str):
        return TextPart(_document_text(block, source["data"]))
    if source_type == "content":
        return TextPart(_document_text(block, tool_content_text(source.get("content"))))
    return AttachmentPart(kind=kind, name=title or source.get("file_id"))


def _document_text(block: dict, text: str) -> str:
    """A text document headed by its ``title`` and ``context`` when given:
    Anthropic shows both to the model, which may need them to tell several
    documents apart or to know where one came from."""
    head = [f"[document: {value}]" if key == "title" else value
            for key in ("title", "context")
            if isinstance(value := block.get(key), str) and value.strip()]
    return "\n".join([*head, text])


def _response_format(body: dict) -> ResponseFormat:
    """Structured output: ``output_config.format`` (or the older ``output_format``)."""
    config = body.get("output_config") if isinstance(body.get("output_config"), dict) else {}
    field = "output_config.format" if "format" in config else "output_format"
    fmt = config.get("format", body.get("output_format"))
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        return parse_response_format(fmt, field)
    return ResponseFormat()
