"""Responses ``input`` items → canonical messages (prompt-compat §4.2).

Everything the API itself emitted may come back as input: reasoning items
(rendered as the reasoning of the following assistant turn), message items,
``function_call`` / ``custom_tool_call`` items (consecutive calls join the
assistant turn before them) and their ``*_output`` items. Item ids are never
looked up, except by an ``item_reference`` item, which stands for an earlier
item of the same conversation (the stored history included) and is replaced
by it; clients that send ``store: false`` resend the whole history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ds2proxy.plugin_api import (
    AttachmentPart,
    InvalidRequest,
    Message,
    NotFound,
    Part,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from ds2proxy.dialects.openai_chat import (
    decode_arguments,
    parse_message,
    user_parts,
)
from ds2proxy.dialects.validate import string
from ds2proxy.dialects.content import tool_content_text

ROLES = frozenset({"user", "system", "developer", "assistant", "tool"})
CALL_TYPES = frozenset({"function_call", "tool_call", "custom_tool_call"})
OUTPUT_TYPES = frozenset({"function_call_output", "tool_result", "custom_tool_call_output"})
USER_PART_TYPES = frozenset({"input_text", "input_image", "input_file"})
# An item declaring tools, not a turn: the request reads its tools.
ADDITIONAL_TOOLS = "additional_tools"
ITEM_REFERENCE = "item_reference"


def conversation_items(body: dict) -> list[Any]:
    """The request's own items: ``messages`` first, else ``input`` in any form."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        return list(messages)
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}] if value.strip() else []
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return list(value)
    raise InvalidRequest("request must include 'input' or 'messages'", param="input")


def references(items: list[Any]) -> list[str]:
    """The ids the ``item_reference`` items name, in order."""
    return [item["id"] for item in items if isinstance(item, dict)
            and item.get("type") == ITEM_REFERENCE and isinstance(item.get("id"), str)]


def resolve_references(items: list[Any], first_input: int = 0,
                       stored: dict[str, Any] | None = None) -> list[Any]:
    """``items`` with every ``item_reference`` replaced by the earlier item of
    that id, or else by the stored item of that id (``stored``: the caller's
    stored responses' items the references name). The reference must be
    resolved, not skipped: skipped, the item it names never reached the model.
    One naming no item known here is a 404, as the official API answers an id
    it does not hold. ``first_input`` is where the request's own items start
    (errors count from there)."""
    if not any(isinstance(item, dict) and item.get("type") == ITEM_REFERENCE
               for item in items):
        return items
    known: dict[str, Any] = {}
    resolved: list[Any] = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("type") == ITEM_REFERENCE:
            ident = item.get("id")
            where = f"input[{index - first_input}].id"
            if not isinstance(ident, str) or not ident:
                raise InvalidRequest(f"'{where}' must be a non-empty string", param=where)
            item = known.get(ident, (stored or {}).get(ident))
            if item is None:
                raise NotFound(f"Item with id '{ident[:100]}' not found.", param=where)
        elif isinstance(item, dict) and isinstance(item.get("id"), str):
            known.setdefault(item["id"], item)
        resolved.append(item)
    return resolved


def items_to_messages(items: list[Any], instructions: Any = None,
                      namespaces: dict[str, str] | None = None) -> list[Message]:
    """Canonical messages for the items, ``instructions`` as the first system
    message; ``namespaces`` (the model's tool name → its namespace) names a
    past call of a namespace's tool as the model knows it."""
    reader = _ItemReader(namespaces=namespaces or {})
    if isinstance(instructions, str) and instructions.strip():
        reader.messages.append(Message("system", [TextPart(instructions)]))
    for i, item in enumerate(items):
        if isinstance(item, str):
            reader.loose(item)
        elif isinstance(item, dict):
            reader.item(item, i)
        else:
            raise InvalidRequest(f"input[{i}] must be an object or a string", param="input")
    reader.end_loose()
    return reader.messages


@dataclass
class _ItemReader:
    """Folds items into messages, tracking what spans several items."""

    messages: list[Message] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    loose_text: list[str] = field(default_factory=list)
    call_names: dict[str, str] = field(default_factory=dict)
    namespaces: dict[str, str] = field(default_factory=dict)

    def item(self, item: dict, i: int) -> None:
        kind = string(item.get("type"), f"input[{i}].type")
        if kind == ADDITIONAL_TOOLS:
            return
        if kind == "reasoning":
            self.end_loose()
            self.reasoning.append(reasoning_text(item))
        elif kind in CALL_TYPES:
            self.end_loose()
            self._call(item, i)
        elif kind in OUTPUT_TYPES:
            self._add([Message("tool", [self._result(item, i)])])
        elif isinstance(item.get("role"), str) and (kind in (None, "message")
                                                   or item["role"] in ROLES):
            self._role_item(item, i)
        elif kind in USER_PART_TYPES:
            self._add([Message("user", user_parts(item, f"input[{i}]"))])
        else:
            self.loose(_loose_text(item))

    def loose(self, text: str) -> None:
        if text:
            self.loose_text.append(text)

    def end_loose(self) -> None:
        if self.loose_text:
            self.messages.append(Message("user", [TextPart("\n".join(self.loose_text))]))
            self.loose_text = []

    def _add(self, messages: list[Message]) -> None:
        self.end_loose()
        for message in messages:
            if message.role == "assistant":
                message.parts[:0] = self._take_reasoning()
            self.messages.append(message)
        self.reasoning = []  # reasoning not followed by its assistant turn is dropped

    def _take_reasoning(self) -> list[Part]:
        text = "\n".join(t for t in self.reasoning if t)
        self.reasoning = []
        return [ReasoningPart(text)] if text else []

    def _role_item(self, item: dict, i: int) -> None:
        content = item.get("content", item.get("text"))
        if item.get("role") in ("system", "developer") and _has_media(content):
            # Responses takes images and files in any role's content (Chat's
            # instructions are text only): attached, not dropped unseen.
            self._add([Message("system", user_parts(content, f"input[{i}].content"))])
            return
        messages = parse_message({**item, "content": content}, i, f"input[{i}]")
        for message in messages:
            self.call_names.update((part.id, part.name) for part in message.parts
                                   if isinstance(part, ToolCall))
        self._add(messages)

    def _call(self, item: dict, i: int) -> None:
        call = tool_call_item(item, f"call_{i}")
        if call is None:
            return
        space = item.get("namespace")
        if isinstance(space, str) and self.namespaces.get(f"{space}.{call.name}") == space:
            call.name = f"{space}.{call.name}"
        self.call_names[call.id] = call.name
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == "assistant" and not self.reasoning:
            last.parts.append(call)
        else:
            self._add([Message("assistant", [call])])

    def _result(self, item: dict, i: int) -> ToolResult:
        call_id = str(item.get("call_id") or item.get("tool_call_id") or f"call_{i}")
        raw = item["output"] if "output" in item else item.get("content")
        name = item.get("name") or item.get("tool_name") or self.call_names.get(call_id)
        if not isinstance(raw, list):
            return ToolResult(call_id=call_id, content=tool_content_text(raw), name=name)
        # An output list may carry input_image / input_file parts (a screenshot).
        parts = user_parts(raw)
        text = "\n".join(p.text for p in parts if isinstance(p, TextPart) and p.text)
        return ToolResult(call_id=call_id, content=text, name=name,
                          attachments=tuple(p for p in parts if isinstance(p, AttachmentPart)))


def tool_call_item(item: dict, fallback_id: str) -> ToolCall | None:
    """A ``function_call`` / ``custom_tool_call`` item; its ``call_id`` is the call's id."""
    fn = item.get("function") if isinstance(item.get("function"), dict) else {}
    name = item.get("name") or fn.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    call_id = str(item.get("call_id") or item.get("id") or fallback_id)
    if item.get("type") == "custom_tool_call":
        raw = item.get("input", "")
        return ToolCall(id=call_id, name=name.strip(), kind="custom",
                        arguments=raw if isinstance(raw, str) else tool_content_text(raw))
    raw = next((src[k] for src in (item, fn) for k in ("arguments", "input") if k in src), None)
    return ToolCall(id=call_id, name=name.strip(), arguments=decode_arguments(raw))


def _has_media(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") in ("input_image", "input_file")
        for part in content)


def reasoning_text(item: dict) -> str:
    """A reasoning item's summary text (or its content text when it has no summary)."""
    for key in ("summary", "content"):
        parts = item.get(key) if isinstance(item.get(key), list) else []
        texts = [part.get("text") for part in parts if isinstance(part, dict)]
        joined = "\n".join(t for t in texts if isinstance(t, str) and t)
        if joined:
            return joined
    return ""


def _loose_text(item: dict) -> str:
    text = item.get("text")
    if isinstance(text, str):
        return text
    return tool_content_text(item.get("content")) if isinstance(item.get("content"),
                                                                (str, list)) else ""
