"""Gemini ``contents`` and ``systemInstruction`` → canonical messages.

Prompt-compat §4.4: roles ``user`` / ``model`` / ``system``; in each content
the parts keep their order, a ``functionResponse`` becomes a tool message,
``thought: true`` text of a model turn is that turn's reasoning, inline data
becomes an attachment and unknown parts (``executableCode`` …) become short
JSON text with binary payloads omitted. Calls and
results that come without ids get ``call_gemini_N`` so the prompt can pair
them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ds2proxy.plugin_api import (
    AttachmentPart,
    InvalidRequest,
    Message,
    Part,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from ds2proxy.dialects.redact import redacted_json
from ds2proxy.dialects.openai_chat import decode_arguments
from ds2proxy.dialects.content import inline_bytes, tool_content_text
from ds2proxy.dialects.validate import objects

from .fields import pick

PART_TEXT_LIMIT = 1024
TRUNCATED = "...(truncated)"
# Gemini's roles, plus what other clients send; "function" is the older role
# of a turn that carries functionResponse parts.
ROLES = {"user": "user", "model": "assistant", "assistant": "assistant", "system": "system",
         "function": "user", "tool": "user"}
# Part metadata that carries nothing for the prompt (signatures are opaque).
_METADATA = frozenset({"thought", "thoughtSignature", "thought_signature", "partMetadata",
                       "part_metadata", "videoMetadata", "video_metadata", "mediaResolution",
                       "media_resolution"})


def part_text(part: dict) -> str:
    """A part the gateway has no use for, as redacted JSON text capped in length."""
    text = redacted_json(part)
    return text if len(text) <= PART_TEXT_LIMIT else text[:PART_TEXT_LIMIT] + TRUNCATED


class CallIds:
    """Ids for history calls and results, assigned in conversation order.

    A result without an id answers the oldest unanswered call of its name,
    so parallel calls to one tool stay paired; failing that it takes the
    last id seen for the name, or a fresh one.
    """

    def __init__(self) -> None:
        self._count = 0
        # Per name, the unanswered ids oldest first, each with how many calls
        # carry it: a linked order, so answering any of thousands is O(1).
        self._open: dict[str, OrderedDict[str, int]] = {}
        self._last: dict[str, str] = {}

    def _fresh(self) -> str:
        self._count += 1
        return f"call_gemini_{self._count}"

    def call(self, name: str, given: str | None) -> str:
        call_id = given or self._fresh()
        waiting = self._open.setdefault(name, OrderedDict())
        waiting[call_id] = waiting.get(call_id, 0) + 1
        self._last[name] = call_id
        return call_id

    def result(self, name: str, given: str | None) -> str:
        waiting = self._open.get(name)
        if given:
            if waiting and given in waiting:
                _answer(waiting, given)
            return given
        if waiting:
            return _answer(waiting, next(iter(waiting)))
        return self._last.get(name) or self._fresh()


def _answer(waiting: OrderedDict[str, int], call_id: str) -> str:
    """``call_id`` answered once (gone when no call with it is left)."""
    if waiting[call_id] > 1:
        waiting[call_id] -= 1
    else:
        del waiting[call_id]
    return call_id


def system_messages(value: Any) -> list[Message]:
    """``systemInstruction`` as a string, ``{parts:[{text}]}`` or ``{text}``."""
    text = _system_text(value)
    return [Message("system", [TextPart(text)])] if text.strip() else []


def _system_text(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    parts = value.get("parts") if isinstance(value, dict) else value
    if isinstance(value, dict) and parts is None:
        return value["text"] if isinstance(value.get("text"), str) else ""
    if isinstance(parts, dict):  # one part where a list belongs, as contents may have it
        parts = [parts]
    if not isinstance(parts, list):
        raise InvalidRequest("'systemInstruction' must be a string or a content object",
                             param="systemInstruction")
    texts = [p if isinstance(p, str) else p.get("text") for p in parts
             if isinstance(p, str) or isinstance(p, dict)]
    return "\n".join(t for t in texts if isinstance(t, str))


def parse_contents(value: Any) -> list[Message]:
    """The conversation; 400 when there is none."""
    if isinstance(value, dict):
        value = [value]
    ids = CallIds()
    messages: list[Message] = []
    for index, content in objects(value, "contents"):
        messages.extend(_content(content, index, ids))
    return messages


def _content(content: dict, index: int, ids: CallIds) -> list[Message]:
    """One content → its message, plus one tool message per functionResponse.

    Results follow a model turn's calls but precede a user turn's text, so a
    result always sits right after the assistant turn that asked for it.
    """
    role = content.get("role")
    if role is not None and not isinstance(role, str):
        raise InvalidRequest(f"'contents[{index}].role' must be a string",
                             param=f"contents[{index}].role")
    if role and role.lower() not in ROLES:
        raise InvalidRequest(f"'contents[{index}].role' must be one of: user, model",
                             param=f"contents[{index}].role")
    role = ROLES.get((role or "").lower(), "user")
    parts = content.get("parts")
    if parts is None and isinstance(content.get("text"), str):
        parts = [{"text": content["text"]}]
    if parts is None:
        raise InvalidRequest(f"'contents[{index}].parts' is required",
                             param=f"contents[{index}].parts")
    if isinstance(parts, dict):
        parts = [parts]
    if not isinstance(parts, list):
        raise InvalidRequest(f"contents[{index}].parts must be a list", param="contents")
    if not parts:
        raise InvalidRequest(f"'contents[{index}].parts' must not be empty",
                             param=f"contents[{index}].parts")
    body: list[Part] = []
    results: list[Message] = []
    for number, raw in enumerate(parts):
        if not isinstance(raw, str) and (not isinstance(raw, dict)
                                         or not isinstance(raw.get("text", ""), str | None)):
            raise InvalidRequest(_part_problem(raw, f"contents[{index}].parts[{number}]"),
                                 param=f"contents[{index}].parts")
        part = _part({"text": raw} if isinstance(raw, str) else raw, role, ids)
        if isinstance(part, ToolResult):
            results.append(Message("tool", [part]))
        elif part is not None:
            body.append(part)
    said = [Message(role, body)] if body else []
    return said + results if role == "assistant" else results + said


def _part_problem(raw: Any, where: str) -> str:
    if not isinstance(raw, dict):
        return f"'{where}' must be an object"
    return f"'{where}.text' must be a string"


def _part(part: Any, role: str, ids: CallIds) -> Part | None:
    if not isinstance(part, dict):
        return None
    call = pick(part, "functionCall")
    if isinstance(call, dict):
        # Only a model turn may carry calls: a user cannot forge one.
        return _call(call, ids) if role == "assistant" else TextPart(part_text(part))
    response = pick(part, "functionResponse")
    if isinstance(response, dict):
        return _result(response, ids)
    if isinstance(part.get("text"), str):
        return _text(part, role)
    blob = pick(part, "inlineData")
    if isinstance(blob, dict):
        return _inline(blob)
    file = pick(part, "fileData")
    if isinstance(file, dict):
        return _attachment(file, url=pick(file, "fileUri"))
    rest = {key: value for key, value in part.items() if key not in _METADATA}
    return TextPart(part_text(rest)) if rest else None


def _text(part: dict, role: str) -> Part | None:
    text = part["text"]
    if not text.strip():
        return None
    if part.get("thought") is True and role == "assistant":
        return ReasoningPart(text)
    return TextPart(text)


def _call(call: dict, ids: CallIds) -> ToolCall | None:
    name = call.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    name = name.strip()
    given = call.get("id") or call.get("callId") or call.get("call_id")
    return ToolCall(id=ids.call(name, str(given) if given else None), name=name,
                    arguments=decode_arguments(call.get("args")))


def _result(response: dict, ids: CallIds) -> ToolResult:
    name = response.get("name") if isinstance(response.get("name"), str) else ""
    given = next((response[key] for key in ("id", "callId", "call_id", "tool_call_id")
                  if response.get(key)), None)
    value = response.get("response")
    if value is None:
        value = response.get("output")
    return ToolResult(call_id=ids.result(name, str(given) if given else None),
                      content=tool_content_text(value), name=name or None,
                      attachments=_result_media(response.get("parts")))


def _result_media(parts: Any) -> tuple[AttachmentPart, ...]:
    """Multimodal function responses: inline or file data parts of the result."""
    if not isinstance(parts, list):
        return ()
    media: list[AttachmentPart] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if isinstance(blob := pick(part, "inlineData"), dict):
            media.append(_inline(blob))
        elif isinstance(file := pick(part, "fileData"), dict):
            media.append(_attachment(file, url=pick(file, "fileUri")))
    return tuple(media)


def _inline(blob: dict) -> AttachmentPart:
    data = blob.get("data")
    if not isinstance(data, str):
        raise InvalidRequest("an inlineData part has no base64 'data'", param="contents")
    return _attachment(blob, data=inline_bytes(data, "inlineData.data", protobuf=True))


def _attachment(blob: dict, *, url: Any = None, data: bytes | None = None) -> AttachmentPart:
    mime = pick(blob, "mimeType")
    mime = mime if isinstance(mime, str) and mime else None
    name = pick(blob, "displayName")
    return AttachmentPart(kind="image" if (mime or "").startswith("image/") else "file",
                          mime_type=mime, name=name if isinstance(name, str) else None,
                          url=url if isinstance(url, str) else None, data=data)
