"""What the fake OpenAI-compatible provider answers: scripted replies and the
chat-completion chunks and objects built from them.

A :class:`ProviderReply` says what one ``/chat/completions`` call returns:
text, ``reasoning_content``, ``<think>`` tags in the text, tool calls, how the
content is cut into chunks (``cuts`` at given character offsets, or
``chunk_chars`` each), an HTTP failure (429 with ``Retry-After``, 5xx), a
delay, a connection dropped after some chunks (output already started), or
a raw body of any status and content type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ToolCallSpec = tuple[str, str]  # (function name, arguments as JSON text)


@dataclass
class ProviderReply:
    """One scripted answer of the fake provider."""

    text: str = ""
    reasoning: str = ""
    # reasoning goes in ``reasoning_content`` (field) or inside the text as
    # ``<think>…</think>`` (think_tags).
    reasoning_as: str = "field"
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    finish_reason: str | None = None  # default: tool_calls when calls, else stop
    # How the content is cut: explicit character offsets, else chunk_chars.
    cuts: list[int] | None = None
    chunk_chars: int = 4
    write_bytes: int | None = None  # write each SSE event this many bytes at a time
    status: int = 200
    retry_after: str | None = None
    error_message: str = "scripted failure"
    delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between chunks
    drop_after_chunks: int | None = None  # cut the connection after N content chunks
    usage: tuple[int, int] | None = None  # (prompt, completion); default computed
    # Members added to the usage object (e.g. a cache's prompt_tokens_details).
    usage_extra: dict[str, Any] = field(default_factory=dict)
    # A body sent as it is (with ``status`` and ``content_type``, in pieces of
    # ``write_bytes``), for answers no well-behaved provider gives.
    raw: bytes | None = None
    content_type: str = "text/event-stream"

    @property
    def content(self) -> str:
        """The message content as the provider sends it (tags included)."""
        if self.reasoning and self.reasoning_as == "think_tags":
            return f"<think>{self.reasoning}</think>{self.text}"
        return self.text

    @property
    def field_reasoning(self) -> str:
        return self.reasoning if self.reasoning_as == "field" else ""

    @property
    def finish(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")

    def pieces(self, text: str) -> list[str]:
        """``text`` cut at ``cuts`` (character offsets) or every ``chunk_chars``."""
        if not text:
            return []
        if self.cuts is not None:
            bounds = sorted({c for c in self.cuts if 0 < c < len(text)})
        else:
            bounds = list(range(self.chunk_chars, len(text), max(1, self.chunk_chars)))
        edges = [0, *bounds, len(text)]
        return [text[a:b] for a, b in zip(edges, edges[1:])]


def usage_of(reply: ProviderReply, body: dict[str, Any]) -> dict[str, Any]:
    """The usage object: scripted, else characters of the prompt and answer
    (deterministic, so tests can assert it travelled)."""
    if reply.usage is not None:
        prompt, completion = reply.usage
    else:
        prompt = sum(len(json.dumps(m.get("content"))) for m in body.get("messages") or ())
        completion = len(reply.content) + len(reply.field_reasoning) + sum(
            len(args) for _, args in reply.tool_calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": len(reply.reasoning)},
            **reply.usage_extra}


def call_id(index: int) -> str:
    return f"call_fake{index}"


def completion_object(reply: ProviderReply, body: dict[str, Any], ident: str,
                      created: int) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
    if reply.field_reasoning:
        message["reasoning_content"] = reply.field_reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": call_id(i), "type": "function", "function": {"name": name, "arguments": args}}
            for i, (name, args) in enumerate(reply.tool_calls)]
    return {"id": ident, "object": "chat.completion", "created": created,
            "model": body.get("model"), "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish}],
            "usage": usage_of(reply, body)}


def stream_deltas(reply: ProviderReply) -> list[dict[str, Any]]:
    """The ``delta`` objects of a streamed answer, in order, before the final
    chunk: role, reasoning pieces, content pieces, then each call's header
    and argument pieces."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"reasoning_content": p} for p in reply.pieces(reply.field_reasoning)]
    deltas += [{"content": p} for p in reply.pieces(reply.content)]
    for i, (name, args) in enumerate(reply.tool_calls):
        deltas.append({"tool_calls": [{"index": i, "id": call_id(i), "type": "function",
                                       "function": {"name": name, "arguments": ""}}]})
        deltas += [{"tool_calls": [{"index": i, "function": {"arguments": p}}]}
                   for p in reply.pieces(args)]
    return deltas


def chunk(ident: str, created: int, model: Any, delta: dict[str, Any] | None,
          finish: str | None = None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``delta`` None gives the usage-only chunk."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    data: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk", "created": created,
                            "model": model, "system_fingerprint": "fp_fake", "choices": choices}
    if usage is not None:
        data["usage"] = usage
    return data
