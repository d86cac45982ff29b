"""The streaming sieve the pipeline drives: visible-text chunks in, canonical
text and tool-call events out, never any raw call syntax.

It joins the segmenter (what is text, what is a call) with the cleaner
(what text must not be shown), and at the end of the turn looks for calls
the model wrote into its reasoning instead of its answer.
"""

from __future__ import annotations

from collections.abc import Callable

from ds2proxy.canonical import TextDelta, ToolCallArgs, ToolCallEnd, ToolCallStart, ToolChoice, ToolSpec
from ds2proxy.toolcall.clean import TextCleaner
from ds2proxy.toolcall.ids import default_call_id
from ds2proxy.toolcall.invoke import CallBuilder
from ds2proxy.toolcall.segmenter import Consumed, EarlyEmit, Event, RawText, Segmenter

SieveEvent = TextDelta | ToolCallStart | ToolCallArgs | ToolCallEnd


class ToolSieve:
    """Per-response sieve. ``calls`` counts the calls emitted so far."""

    def __init__(self, tools: list[ToolSpec], choice: ToolChoice, *, early_emit: EarlyEmit = "high",
                 single_call: bool = False,
                 new_call_id: Callable[[], str] = default_call_id) -> None:
        if early_emit not in ("high", "low", "off"):
            raise ValueError(f"early_emit must be high, low or off, not {early_emit!r}")
        self._choice = choice
        self._builder = CallBuilder(tools, choice)
        self._single_call = single_call
        self._new_call_id = new_call_id
        self._segmenter = self._new_segmenter(early_emit, first_index=0)
        self._passthrough = not tools
        self._cleaner = TextCleaner()
        self._visible = False
        self._reasoning_calls = 0
        # The model wrote a block the sieve took out (a call, or one refused:
        # an undeclared tool, a tool_choice that forbids it, empty arguments).
        self.consumed = False

    @property
    def calls(self) -> int:
        return self._segmenter.calls + self._reasoning_calls

    @property
    def block_cut(self) -> bool:
        """The visible text ended inside a tool block (its last call unfinished)."""
        return self._segmenter.block_cut

    def feed(self, text: str) -> list[SieveEvent]:
        if self._passthrough:
            return self._text(self._cleaner.feed(text))
        return self._convert(self._segmenter.feed(text))

    def flush(self) -> list[SieveEvent]:
        """End of the visible text (§4.7)."""
        out = [] if self._passthrough else self._convert(self._segmenter.flush())
        return out + self._text(self._cleaner.flush())

    def finish(self, reasoning: str) -> list[SieveEvent]:
        """After ``flush``: the calls of a turn whose only calls sit in the
        reasoning while its answer is blank (§4.8); else nothing."""
        if self._passthrough or self.calls or self._visible or not reasoning.strip():
            return []
        inner = self._new_segmenter("high", first_index=self._segmenter.next_index)
        events = inner.feed(reasoning) + inner.flush()
        self._reasoning_calls = inner.calls
        return [e for e in events if isinstance(e, ToolCallStart | ToolCallArgs | ToolCallEnd)]

    def _new_segmenter(self, early_emit: EarlyEmit, *, first_index: int) -> Segmenter:
        return Segmenter(self._builder, early_emit=early_emit, single_call=self._single_call,
                         new_call_id=self._new_call_id, first_index=first_index)

    def violation(self) -> bool:
        """tool_choice demanded a call and none was made."""
        return self._choice.mode in ("required", "forced") and not self.calls

    def _convert(self, events: list[Event]) -> list[SieveEvent]:
        out: list[SieveEvent] = []
        for event in events:
            if isinstance(event, RawText):
                self._add_text(out, self._cleaner.feed(event.text))
                continue
            # Text on either side of a block is not contiguous: end the cleaner's run.
            self._add_text(out, self._cleaner.flush())
            if not isinstance(event, Consumed):
                out.append(event)
            elif event.text.strip():
                self.consumed = True
        return out

    def _text(self, text: str) -> list[SieveEvent]:
        out: list[SieveEvent] = []
        self._add_text(out, text)
        return out

    def _add_text(self, out: list[SieveEvent], text: str) -> None:
        """Append text, merged into a text event right before it (fewer frames)."""
        if not text:
            return
        self._visible = self._visible or bool(text.strip())
        if out and isinstance(out[-1], TextDelta):
            out[-1] = TextDelta(out[-1].text + text)
        else:
            out.append(TextDelta(text))
