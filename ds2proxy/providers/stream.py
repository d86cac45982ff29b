"""A provider's chat-completion chunks → canonical turn events.

:class:`ThinkSplitter` separates ``<think>…</think>`` from the answer in a
streamed text: a tag may be cut anywhere between chunks, so the tail of a
chunk that could still begin a tag is held until the next one decides it.
:class:`ChunkTranslator` turns each chunk's ``delta`` (content,
``reasoning_content``, ``tool_calls``), its ``finish_reason`` and the usage
into :class:`~ds2proxy.canonical.TurnEvent` values.
"""

from __future__ import annotations

import json
from typing import Any

from ..canonical import (
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
    TurnEvent,
    Usage,
)
from .request import CUSTOM_INPUT

OPEN, CLOSE = "<think>", "</think>"
# The chat API's finish reasons, and what gateways in front of other APIs pass
# through unmapped (Anthropic's, Gemini's in upper case): a cut-off answer must
# stay "length", or a client never learns it should continue.
FINISHES: dict[str, FinishReason] = {
    "stop": "stop", "length": "length", "tool_calls": "tool_calls",
    "function_call": "tool_calls", "content_filter": "content_filter",
    "max_tokens": "length", "max_output_tokens": "length", "tool_use": "tool_calls",
    "safety": "content_filter", "recitation": "content_filter", "refusal": "content_filter"}


def _held(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could begin ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    """Streamed text → (reasoning, answer) pieces, tags removed.

    Only a ``<think>`` at the start of the answer (leading blanks allowed)
    opens reasoning, as models that think in tags write it; a later one is
    text. Leading blanks after ``</think>`` are dropped.
    """

    def __init__(self) -> None:
        self._pending = ""
        self._state = "start"  # start | thinking | after | answer

    def feed(self, text: str) -> list[TurnEvent]:
        self._pending += text
        out: list[TurnEvent] = []
        while self._pending:
            if not self._step(out):
                break
        return out

    def _step(self, out: list[TurnEvent]) -> bool:
        """Consume what can be decided; False when the rest must wait."""
        text = self._pending
        if self._state == "start":
            stripped = text.lstrip()
            if stripped.startswith(OPEN):
                self._pending, self._state = stripped[len(OPEN):], "thinking"
                return True
            if OPEN.startswith(stripped):
                return False  # blanks or a cut "<thi": undecided
            self._state = "answer"
            return True
        if self._state == "thinking":
            end = text.find(CLOSE)
            if end >= 0:
                if end:
                    out.append(ReasoningDelta(text[:end]))
                self._pending, self._state = text[end + len(CLOSE):], "after"
                return True
            keep = _held(text, CLOSE)
            if len(text) > keep:
                out.append(ReasoningDelta(text[:len(text) - keep]))
            self._pending = text[len(text) - keep:]
            return False
        if self._state == "after":
            stripped = text.lstrip()
            if not stripped:
                self._pending = ""
                return False
            self._pending, self._state = stripped, "answer"
            return True
        out.append(TextDelta(text))
        self._pending = ""
        return False

    def flush(self) -> list[TurnEvent]:
        """What is still held when the stream ends (an unclosed tag's text)."""
        text, self._pending = self._pending, ""
        if not text or self._state == "after":
            return []
        return [ReasoningDelta(text)] if self._state == "thinking" else [TextDelta(text)]


class ChunkTranslator:
    """One provider answer's chunks → canonical events."""

    def __init__(self, *, think_tags: bool, tools: list[ToolSpec],
                 reasoning_field: bool = True, keep_reasoning: bool = True) -> None:
        self._splitter = ThinkSplitter() if think_tags else None
        self._reasoning_field = reasoning_field
        self._keep_reasoning = keep_reasoning
        self._custom = {t.name for t in tools if t.kind == "custom"}
        self._calls: dict[Any, int] = {}  # provider's call index → ours (the latest there)
        self._ids: list[str] = []  # the provider's id of each of our calls
        self._custom_args: dict[int, list[str]] = {}
        self._open: int | None = None
        self.usage: Usage | None = None
        self.finish: FinishReason | None = None
        self.emitted = False
        self.text_parts: list[str] = []

    def chunk(self, data: dict[str, Any]) -> list[TurnEvent]:
        """The events of one parsed chunk (or of a whole non-streamed message)."""
        out: list[TurnEvent] = []
        usage = data.get("usage")
        if usage:
            self.usage = _usage(usage) or self.usage
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or choice.get("message") or {}
            self._delta(delta, out)
            reason = choice.get("finish_reason")
            if reason:
                self.finish = FINISHES.get(reason.lower(), "stop")
        if out:
            self.emitted = True
        return out

    def _delta(self, delta: dict[str, Any], out: list[TurnEvent]) -> None:
        if len(delta) == 1 and "content" in delta and self._splitter is None:
            content = delta["content"]  # the usual chunk: a piece of the answer
            if type(content) is str and content:
                self.text_parts.append(content)
                out.append(TextDelta(content))
            return
        reasoning = self._reasoning_field and (delta.get("reasoning_content")
                                               or delta.get("reasoning"))
        if isinstance(reasoning, str) and reasoning:
            self.text_parts.append(reasoning)
            out.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.text_parts.append(content)
            out += self._splitter.feed(content) if self._splitter else [TextDelta(content)]
        if not self._keep_reasoning:
            out[:] = [e for e in out if type(e) is not ReasoningDelta]
        for call in delta.get("tool_calls") or ():
            self._call(call, out)

    def _call(self, call: dict[str, Any], out: list[TurnEvent]) -> None:
        function = call.get("function") or {}
        ours = self._continued(call, function)
        if ours is None:
            self._close_call(out)
            ours = len(self._ids)
            self._ids.append(call.get("id") or "")
            name = function.get("name") or ""
            custom = name in self._custom
            out.append(ToolCallStart(ours, call.get("id") or f"call_{ours}", name,
                                     "custom" if custom else "function"))
            if custom:
                self._custom_args[ours] = []
            self._open = ours
        if call.get("index") is not None:
            self._calls[call["index"]] = ours
        pieces = function.get("arguments")
        if isinstance(pieces, str) and pieces:
            self.text_parts.append(pieces)
            if ours in self._custom_args:
                self._custom_args[ours].append(pieces)
            else:
                out.append(ToolCallArgs(ours, pieces))

    def _continued(self, call: dict[str, Any], function: dict[str, Any]) -> int | None:
        """Our call a tool-call delta continues; None when it starts one.

        By the provider's ``index``, except that some providers give every
        call of a parallel batch the same index (each naming its function
        under an id of its own) and some give none (then a delta naming an id
        or a function starts a call, a bare one continues the open call). A
        new id without a name is a fragment: some gateways mint an id per
        chunk."""
        ident, named = call.get("id") or "", bool(function.get("name"))
        if call.get("index") is None:
            if self._open is None or ((ident or named) and ident != self._ids[self._open]):
                return None
            return self._open
        ours = self._calls.get(call["index"])
        if ours is None or (named and ident and ident != self._ids[ours]):
            return None
        return ours

    def _close_call(self, out: list[TurnEvent]) -> None:
        if self._open is None:
            return
        ours, self._open = self._open, None
        if ours in self._custom_args:
            out.append(ToolCallArgs(ours, _custom_input("".join(self._custom_args.pop(ours)))))
        out.append(ToolCallEnd(ours))

    def end(self) -> list[TurnEvent]:
        """Held text and the open call, when the answer is over."""
        out = self._splitter.flush() if self._splitter else []
        if not self._keep_reasoning:
            out = [e for e in out if type(e) is not ReasoningDelta]
        self._close_call(out)
        if out:
            self.emitted = True
        return out

    @property
    def finish_reason(self) -> FinishReason:
        if self._ids and self.finish in (None, "stop"):
            return "tool_calls"
        return self.finish or "stop"


def _custom_input(arguments: str) -> str:
    """A free-form tool's text: the ``input`` of the function it was sent as."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    return value.get(CUSTOM_INPUT, arguments) if isinstance(value, dict) else arguments


def _usage(data: dict[str, Any]) -> Usage | None:
    """The provider's counts; None when they are not numbers (then our own
    count stands in, as for a provider that reports none)."""
    details = data.get("completion_tokens_details")
    counts = (data.get("prompt_tokens"), data.get("completion_tokens"),
              details.get("reasoning_tokens") if isinstance(details, dict) else None)
    if not all(c is None or type(c) in (int, float) for c in counts):
        return None
    prompt, completion, reasoning = (int(c or 0) for c in counts)
    return Usage(prompt, completion, reasoning)


def final_events(translator: ChunkTranslator, fallback: Usage) -> list[TurnEvent]:
    """Usage (the provider's, else ``fallback``) and the finish reason."""
    return [translator.usage or fallback, Finish(translator.finish_reason)]
