"""From upstream text to canonical turn events.

:class:`TurnShaper` receives the parser's answer and reasoning chunks and
produces what a client may see: reasoning deltas (only when thinking is
shown), cleaned answer text with citation markers styled, tool calls found by
the sieve, and at the end citations, usage and the finish reason. It holds
no I/O, so the pipeline and the tests drive it the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

from .canonical import (
    ChatRequest,
    Citation,
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    TurnEvent,
    Usage,
)
from .citations import CitationRewriter
from .errors import ToolChoiceViolation
from .structured import check, extract_json
from .tokens import count_tokens
from .toolcall.clean import TextCleaner
from .toolcall.sieve import ToolSieve


@dataclass(frozen=True, slots=True)
class ShapingSettings:
    toolcall_mode: str = "feature_match"
    early_emit: str = "high"
    citation_style: str = "raw"


class TurnShaper:
    def __init__(self, chat: ChatRequest, settings: ShapingSettings, prompt_tokens: int,
                 citations: Callable[[], list[tuple[int, str, str]]]) -> None:
        self.chat = chat
        self.show_reasoning = chat.thinking_enabled
        self.prompt_tokens = prompt_tokens
        self._citations = citations
        self._custom = {t.name for t in chat.tools if t.kind == "custom"}
        self._early_emit = settings.early_emit
        use_sieve = bool(chat.tools) and settings.toolcall_mode == "feature_match"
        self.sieve = (ToolSieve(chat.tools, chat.tool_choice, early_emit=settings.early_emit,
                                single_call=not chat.parallel_tool_calls) if use_sieve else None)
        self.cleaner = None if use_sieve else TextCleaner()
        self.rewriter = CitationRewriter(settings.citation_style, url_lookup(citations))
        self.reasoning: list[str] = []
        self.visible: list[str] = []
        self.calls = 0
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        self.emitted = 0
        self.length_hit = False
        self.filtered: str | None = None
        self.json_mode = chat.response_format.type != "text"
        self._json_buffer: list[str] = []

    # -- inputs --------------------------------------------------------------

    def on_reasoning(self, text: str) -> list[TurnEvent]:
        self.reasoning.append(text)
        if not self.show_reasoning or not text:
            return []
        tokens = count_tokens(text)
        self.reasoning_tokens += tokens
        return self._out([ReasoningDelta(text)], tokens)

    def on_answer(self, text: str) -> list[TurnEvent]:
        if not text:
            return []
        return self._route(self.rewriter.feed(text))

    def on_filtered(self, template: str) -> None:
        self.filtered = template

    @property
    def stopped(self) -> bool:
        """The client's max_tokens was reached: read no further."""
        return self.length_hit

    @property
    def has_visible_output(self) -> bool:
        return self.calls > 0 or bool("".join(self.visible).strip())

    @property
    def hidden_reasoning(self) -> str:
        return "".join(self.reasoning)

    # -- end of turn ---------------------------------------------------------

    def flush(self) -> list[TurnEvent]:
        """Release held text and apply §4.8 (calls written in the reasoning)."""
        events = self._route(self.rewriter.flush())
        if self.sieve is not None:
            events += self._track(self.sieve.flush())
            if not self.has_visible_output:
                events += self._track(self.sieve.finish(self.hidden_reasoning))
        elif self.cleaner is not None:
            events += self._track([TextDelta(self.cleaner.flush())])
        return events

    @property
    def json_pending(self) -> bool:
        """JSON mode and the buffered answer still has to be checked and sent."""
        return self.json_mode and not self.calls and self.filtered is None

    def finish_json(self) -> list[TurnEvent]:
        """The checked JSON answer as one text delta; JSONOutputError if unusable."""
        value = extract_json("".join(self._json_buffer))
        check(value, self.chat.response_format)
        text = orjson.dumps(value).decode()
        self._json_buffer.clear()
        return self._out([TextDelta(text)], count_tokens(text))

    def restart_answer(self) -> None:
        """Fresh text state for a second try (empty output, bad JSON); counters carry on."""
        chat = self.chat
        self._json_buffer.clear()
        self.visible.clear()
        if self.sieve is not None:
            self.sieve = ToolSieve(chat.tools, chat.tool_choice, early_emit=self._early_emit,
                                   single_call=not chat.parallel_tool_calls)
        else:
            self.cleaner = TextCleaner()

    def tail(self) -> list[TurnEvent]:
        """Citations, usage and the finish reason; raises on a tool_choice violation."""
        if self.sieve is not None and self.filtered is None and self.sieve.violation():
            raise ToolChoiceViolation()
        events: list[TurnEvent] = [Citation(i, url, title) for i, url, title in self._citations()]
        events.append(Usage(self.prompt_tokens, self.completion_tokens, self.reasoning_tokens))
        events.append(Finish(self.finish_reason))
        return events

    @property
    def finish_reason(self) -> FinishReason:
        if self.filtered is not None:
            return "content_filter"
        if self.calls:
            return "tool_calls"
        if self.length_hit:
            return "length"
        return "stop"

    # -- internals -----------------------------------------------------------

    def _route(self, text: str) -> list[TurnEvent]:
        if not text:
            return []
        if self.sieve is not None:
            return self._track(self.sieve.feed(text))
        return self._track([TextDelta(self.cleaner.feed(text))])

    def _track(self, events: list) -> list[TurnEvent]:
        out: list[TurnEvent] = []
        tokens = 0
        for ev in events:
            if isinstance(ev, TextDelta):
                if not ev.text:
                    continue
                self.visible.append(ev.text)
                if self.json_mode:
                    self._json_buffer.append(ev.text)
                    continue
                tokens += count_tokens(ev.text)
            elif isinstance(ev, ToolCallStart):
                self.calls += 1
                if ev.name in self._custom and ev.kind != "custom":
                    ev = ToolCallStart(ev.index, ev.id, ev.name, "custom")
            elif isinstance(ev, ToolCallArgs):
                tokens += count_tokens(ev.arguments)
            out.append(ev)
        return self._out(out, tokens)

    def _out(self, events: list[TurnEvent], tokens: int) -> list[TurnEvent]:
        self.completion_tokens += tokens
        self.emitted += len(events)
        limit = self.chat.max_tokens
        if limit and self.completion_tokens >= limit:
            self.length_hit = True
        return events


def url_lookup(citations: Callable[[], list[tuple[int, str, str]]]
               ) -> Callable[[int], str | None]:
    """Citation number → URL. A closure over the citations only: a bound
    method of the shaper here would make a reference cycle that keeps the
    whole turn (its prompt included) in memory until the next full gc."""
    def url_for(n: int) -> str | None:
        for index, url, _title in citations():
            if index == n:
                return url
        return None
    return url_for
