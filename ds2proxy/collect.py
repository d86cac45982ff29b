"""The non-stream view of a turn: its events folded into one TurnResult.

Text arrives a few characters per event; appending each to the text so far
would copy the whole answer every time (quadratic in its length). The
collector keeps lists of fragments and joins each once, at the end.
"""

from __future__ import annotations

from typing import Any

from .canonical import (
    Citation,
    CollectedCall,
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    TextRun,
    ToolCallArgs,
    ToolCallStart,
    TurnEvent,
    TurnResult,
    Usage,
)


class TurnCollector:
    """Accumulates events with :meth:`add`; :meth:`result` builds the TurnResult."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        # Wire order: ("text", [fragments]) or ("call", index).
        self._segments: list[tuple[str, Any]] = []
        self._calls: list[tuple[ToolCallStart, list[str]]] = []
        self._citations: list[Citation] = []
        self._usage: Usage | None = None
        self._finish: FinishReason | None = None
        self._stop_sequence: str | None = None

    def add(self, event: TurnEvent) -> None:
        if isinstance(event, TextDelta):
            self._add_text(event.text)
        elif type(event) is TextRun:
            self._add_texts(event.texts)
        elif isinstance(event, ReasoningDelta):
            self._reasoning.append(event.text)
        elif isinstance(event, ToolCallStart):
            self._calls.append((event, []))
            self._segments.append(("call", event.index))
        elif isinstance(event, ToolCallArgs):
            # Call indexes count from 0 in emission order across the response.
            self._calls[event.index][1].append(event.arguments)
        elif isinstance(event, Citation):
            self._citations.append(event)
        elif isinstance(event, Usage):
            self._usage = event
        elif isinstance(event, Finish):
            self._finish = event.reason
            self._stop_sequence = event.stop_sequence

    def _add_text(self, text: str) -> None:
        self._text.append(text)
        if self._segments and self._segments[-1][0] == "text":
            self._segments[-1][1].append(text)
        else:
            self._segments.append(("text", [text]))

    def _add_texts(self, texts: list[str]) -> None:
        self._text += texts
        if self._segments and self._segments[-1][0] == "text":
            self._segments[-1][1].extend(texts)
        else:
            self._segments.append(("text", list(texts)))

    def result(self, turn_id: str) -> TurnResult:
        result = TurnResult(
            id=turn_id, text="".join(self._text), reasoning="".join(self._reasoning),
            calls=[CollectedCall(start.id, start.name, "".join(args), start.kind)
                   for start, args in self._calls],
            citations=list(self._citations),
            segments=[(kind, "".join(value) if kind == "text" else value)
                      for kind, value in self._segments])
        if self._usage is not None:
            result.usage = self._usage
        if self._finish is not None:
            result.finish = self._finish
        result.stop_sequence = self._stop_sequence
        return result
