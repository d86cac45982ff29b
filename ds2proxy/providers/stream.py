"""A provider's chat-completion chunks → canonical turn events.

:class:`ThinkSplitter` separates ``<think>…</think>`` from the answer in a
streamed text: a tag may be cut anywhere between chunks, so the tail of a
chunk that could still begin a tag is held until the next one decides it.
:class:`ChunkTranslator` turns each chunk's ``delta`` (content,
``reasoning_content``, ``tool_calls`` through
:class:`~ds2proxy.providers.tool_deltas.ToolCallDeltas`), its
``finish_reason`` and the usage into :class:`~ds2proxy.canonical.TurnEvent`
values.
"""

from __future__ import annotations

from typing import Any

from ..canonical import (
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    ToolSpec,
    TurnEvent,
    Usage,
)
from .tool_deltas import ToolCallDeltas

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
        self.usage: Usage | None = None
        self.finish: FinishReason | None = None
        self.emitted = False
        # The answer as written, for our own count when the provider reports
        # none: content (think tags and all) and call arguments; reasoning
        # sent apart from the content; reasoning inside the content's tags.
        self.text_parts: list[str] = []
        self.field_reasoning: list[str] = []
        self.tag_reasoning: list[str] = []
        self._calls = ToolCallDeltas({t.name for t in tools if t.kind == "custom"},
                                     self.text_parts)

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
        content = delta.get("content")
        if len(delta) == 1 and type(content) is str and self._splitter is None:
            if content:  # the usual chunk: a piece of the answer
                self.text_parts.append(content)
                out.append(TextDelta(content))
            return
        reasoning = self._reasoning_field and (delta.get("reasoning_content")
                                               or delta.get("reasoning"))
        if isinstance(content, list):  # content parts (Mistral's reasoning models)
            thought, content = _parts(content)
            reasoning = reasoning or (self._reasoning_field and thought)
        if isinstance(reasoning, str) and reasoning:
            self.field_reasoning.append(reasoning)
            out.append(ReasoningDelta(reasoning))
        if isinstance(content, str) and content:
            self.text_parts.append(content)
            out += self._split(content) if self._splitter else [TextDelta(content)]
        if not self._keep_reasoning:
            out[:] = [e for e in out if type(e) is not ReasoningDelta]
        for call in delta.get("tool_calls") or ():
            self._calls.feed(call, out)

    def _split(self, content: str) -> list[TurnEvent]:
        """Think-tag content as events; the reasoning in it is noted."""
        assert self._splitter is not None
        return self._tagged(self._splitter.feed(content))

    def _tagged(self, events: list[TurnEvent]) -> list[TurnEvent]:
        self.tag_reasoning += [e.text for e in events if type(e) is ReasoningDelta]
        return events

    @property
    def wrote(self) -> bool:
        """Whether the provider wrote any answer, reasoning or arguments yet."""
        return bool(self.text_parts or self.field_reasoning)

    def own_texts(self) -> tuple[str, str, str]:
        """(answer as written, reasoning sent apart, reasoning in think tags)."""
        return ("".join(self.text_parts), "".join(self.field_reasoning),
                "".join(self.tag_reasoning))

    def end(self) -> list[TurnEvent]:
        """Held text and the open call, when the answer is over."""
        out = self._tagged(self._splitter.flush()) if self._splitter else []
        if not self._keep_reasoning:
            out = [e for e in out if type(e) is not ReasoningDelta]
        self._calls.close(out)
        if out:
            self.emitted = True
        return out

    @property
    def finish_reason(self) -> FinishReason:
        if self._calls.count and self.finish in (None, "stop"):
            return "tool_calls"
        return self.finish or "stop"


def _parts(content: list[Any]) -> tuple[str, str]:
    """``(thinking, text)`` of content given as parts: ``{"type": "text"}``,
    and ``{"type": "thinking", "thinking": text or a list of text parts}``."""
    thinking: list[str] = []
    text: list[str] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif part.get("type") == "thinking":
            inner = part.get("thinking")
            pieces = inner if isinstance(inner, list) else [{"text": inner}]
            thinking += [p["text"] for p in pieces
                         if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "".join(thinking), "".join(text)


# More tokens than any one request could have: a figure above it is garbage.
MAX_REPORTED_TOKENS = 10**9


def _count(value: Any) -> int | None:
    """A token count the provider reported, or None for anything that is not one."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not (0 <= value <= MAX_REPORTED_TOKENS) or value != int(value):
        return None
    return int(value)


def _usage(data: Any) -> Usage | None:
    """The provider's usage, or None (our own count then) when it is not
    counts: a negative, huge or non-numeric figure broke the metrics
    counters, the JSON answer and the usage store's writer."""
    if not isinstance(data, dict):
        return None
    details = data.get("completion_tokens_details")
    counts = (_count(data.get("prompt_tokens")), _count(data.get("completion_tokens")),
              _count(details.get("reasoning_tokens")) if isinstance(details, dict) else 0)
    if any(c is None for c in counts):
        return None
    return Usage(*counts, _cached(data, counts[0]))  # type: ignore[arg-type]


def _cached(data: dict, prompt: int) -> int:
    """Prompt tokens read from the provider's cache: OpenAI's
    ``prompt_tokens_details.cached_tokens``, else DeepSeek's
    ``prompt_cache_hit_tokens``; 0 when it is not a count within the prompt."""
    details = data.get("prompt_tokens_details")
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    if value is None:
        value = data.get("prompt_cache_hit_tokens")
    cached = _count(value)
    return cached if cached is not None and cached <= prompt else 0


def own_usage(prompt_tokens: int, counts: list[int]) -> Usage:
    """Our usage from the counts of :meth:`ChunkTranslator.own_texts`: the
    answer as written plus reasoning sent apart; reasoning wherever it was."""
    answer, field, tagged = counts
    return Usage(prompt_tokens, answer + field, field + tagged)


def final_events(translator: ChunkTranslator, fallback: Usage) -> list[TurnEvent]:
    """Usage (the provider's, else ``fallback``) and the finish reason."""
    return [translator.usage or fallback, Finish(translator.finish_reason)]
