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

from .canonical import (
    ChatRequest,
    Citation,
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    TextRun,
    ToolCallStart,
    TurnEvent,
    Usage,
)
from .citations import CitationRewriter
from .errors import ToolChoiceViolation
from .stops import StopMatcher, StopPieces, stops_of
from .structured import JSONOutputError, settle
from .token_stream import StreamCount
from .turn_counts import TurnCounts
from .toolcall.clean import RULE_START as _SPECIAL
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
        # Whether any visible answer text (not only whitespace) went out: the
        # answer itself is not kept, a long one would stay in memory to the end.
        self.shown = False
        self._blank = ""  # whitespace held until visible text follows (_lead)
        self.calls = 0
        self.counts = TurnCounts(chat.max_tokens)
        self.emitted = 0
        self.length_hit = False
        self.filtered: str | None = None
        self.json_mode = chat.response_format.type != "text"
        self._json_buffer: list[str] = []
        self._stops = stops_of(chat.sampling)
        self.stop_matcher = StopMatcher(self._stops)
        self._stop_pieces = StopPieces(self._stops)
        # Plain text (no marker, tag or fence can start in it, nothing held)
        # goes straight out when no stage could change it.
        self._plain = self.cleaner is not None and not self._stops and not self.json_mode
        # Only max_tokens or a stop sequence can stop the answer early.
        self.may_stop = bool(chat.max_tokens) or bool(self._stops)
        # The client does not receive usage: tail() leaves it out, and the
        # turn has it counted after the response ended (see usage()).
        self.usage_after = False
        # The consumer takes a run of plain answer texts as one TextRun.
        self.text_runs = False

    # -- inputs --------------------------------------------------------------

    def on_reasoning(self, text: str) -> list[TurnEvent]:
        if not self.show_reasoning or not text:
            self.counts.hidden.feed(text)  # not shown, generated all the same
            self.reasoning.append(text)
            return []
        text = self._within_limit(text, self.counts.reasoning, self.counts.answer)
        self.reasoning.append(text)
        return self._out([ReasoningDelta(text)] if text else [])

    def on_answer(self, text: str) -> list[TurnEvent]:
        if not text:
            return []
        if not self._stops:
            return self._answer(text)
        events: list[TurnEvent] = []
        for piece in self._stop_pieces.pieces(text, self.stop_matcher):
            events += self._answer(piece)
            if self.stopped:
                break  # what follows the match is neither sent nor counted
        return events

    def _answer(self, text: str) -> list[TurnEvent]:
        if self.chat.max_tokens:
            text = self._within_limit(text, self.counts.answer, self.counts.reasoning)
            if not text:
                return []
        else:
            self.counts.answer.feed(text)
        if (self._plain and not self.rewriter.held and not self.cleaner.pending
                and _SPECIAL.search(text) is None):
            if not self.shown:
                text = self._lead(text)
                if not text:
                    return []
            self.cleaner.note(text)
            self.emitted += 1
            return [TextDelta(text)]
        return self._route(self.rewriter.feed(text))

    def on_answers(self, texts: list[str]) -> list[TurnEvent]:
        """:meth:`on_answer` for each text in turn; plain texts (nothing
        held, no character that could start a marker, no limit) in one go:
        one count and one scan for the run, a delta per text (one TextRun
        for them all when ``text_runs`` is set)."""
        if (self._plain and not self.chat.max_tokens and not self.rewriter.held
                and not self.cleaner.pending):
            joined = "".join(texts)
            if _SPECIAL.search(joined) is None:
                self.counts.answer.feed(joined)
                texts = [text for text in texts if text] if "" in texts else texts
                if not self.shown:
                    texts = self._lead_run(texts, joined)
                self.cleaner.note("".join(texts))
                self.emitted += len(texts)
                if self.text_runs:
                    return [TextRun(texts)] if texts else []
                return [TextDelta(text) for text in texts]
        events: list[TurnEvent] = []
        for text in texts:
            events += self.on_answer(text)
        return events

    @property
    def reasoning_tokens(self) -> int:
        return self.counts.reasoning_tokens

    @property
    def completion_tokens(self) -> int:
        return self.counts.completion_tokens

    @property
    def produced(self) -> bool:
        """Whether the model wrote anything yet (cheap: no count runs)."""
        return self.counts.produced

    def on_filtered(self, template: str) -> None:
        self.filtered = template

    @property
    def stop_sequence(self) -> str | None:
        """The client's stop sequence that ended the answer, if one did."""
        return self.stop_matcher.matched

    @property
    def stopped(self) -> bool:
        """max_tokens was reached or a stop sequence matched: read no further."""
        return self.length_hit or self.stop_matcher.matched is not None

    @property
    def has_visible_output(self) -> bool:
        return self.calls > 0 or self.shown

    @property
    def answered(self) -> bool:
        """The model gave an answer: visible output, or a tool block the sieve
        refused (an undeclared tool …). Only a turn that did not, asked twice,
        is the empty output a rate-limited account returns."""
        return self.has_visible_output or (self.sieve is not None and self.sieve.consumed)

    def _lead_run(self, texts: list[str], joined: str) -> list[str]:
        """:meth:`_lead` for a run of texts (``joined``: the run as one)."""
        if not joined.strip():
            self._blank += joined
            return []
        at = next(at for at, text in enumerate(texts) if not text.isspace())
        self.shown = True
        lead, self._blank = self._blank + "".join(texts[:at + 1]), ""
        return [lead, *texts[at + 1:]]

    def _lead(self, text: str) -> str:
        """Until visible text went out, whitespace is held for the first visible
        text: a blank answer asked again leaves nothing before the new one, and
        newlines before a call (which drops them) make no delta of their own."""
        if text.isspace():
            self._blank += text
            return ""
        self.shown = True
        text, self._blank = self._blank + text, ""
        return text

    @property
    def hidden_reasoning(self) -> str:
        return "".join(self.reasoning)

    # -- end of turn ---------------------------------------------------------

    def flush(self) -> list[TurnEvent]:
        """Release held text and apply §4.8 (calls written in the reasoning)."""
        if self.stop_sequence is not None:
            return self._blank_answer()
        events = self._route(self.rewriter.flush())
        if self.sieve is not None:
            events += self._track(self.sieve.flush())
            if not self.has_visible_output:
                events += self._track(self.sieve.finish(self.hidden_reasoning))
        elif self.cleaner is not None:
            events += self._track([TextDelta(self.cleaner.flush())])
        return events + self._release_held() + self._blank_answer()

    def _blank_answer(self) -> list[TurnEvent]:
        """Held whitespace that is the whole answer a limit or stop sequence left."""
        blank, self._blank = self._blank, ""
        if not blank or not self.stopped or self.calls:
            return []
        if self.json_mode:
            self._json_buffer.append(blank)
            return []
        return self._out([TextDelta(blank)])

    @property
    def json_pending(self) -> bool:
        """JSON mode and the buffered answer still has to be checked and sent."""
        return self.json_mode and not self.calls and self.filtered is None

    def finish_json(self) -> list[TurnEvent]:
        """The checked JSON answer as one text delta; JSONOutputError if unusable.

        An answer the client's own max_tokens or stop sequence cut is not
        repaired: it goes out as written, with its finish reason, as the
        official APIs return a truncated structured answer."""
        written = "".join(self._json_buffer)
        self._json_buffer.clear()
        try:
            text = settle(written, self.chat.response_format)
        except JSONOutputError:
            if not self.stopped:
                raise
            return self._out([TextDelta(written)] if written else [])
        return self._out([TextDelta(text)])

    def restart_answer(self) -> None:
        """Fresh text state for a second try (empty output, bad JSON); the
        tokens of the answer given so far carry on in the totals."""
        chat = self.chat
        self.counts.restart()
        self._json_buffer.clear()
        self.shown = False
        self._blank = ""
        self.stop_matcher = StopMatcher(self._stops)
        self._stop_pieces = StopPieces(self._stops)
        if self.sieve is not None:
            self.sieve = ToolSieve(chat.tools, chat.tool_choice, early_emit=self._early_emit,
                                   single_call=not chat.parallel_tool_calls)
        else:
            self.cleaner = TextCleaner()

    def tail(self) -> list[TurnEvent]:
        """Citations, usage and the finish reason; raises on a tool_choice violation.

        An answer cut before its call (the client's max_tokens or stop
        sequence, the content filter, continue rounds run out) did not refuse
        to call: it ends with that finish reason, as the official APIs end it."""
        if (self.sieve is not None and self.filtered is None and not self.stopped
                and self.sieve.violation()):
            raise ToolChoiceViolation()
        events: list[TurnEvent] = [Citation(i, url, title) for i, url, title in self._citations()]
        if not self.usage_after:
            events.append(self.usage())
        reason = self.finish_reason
        # A stop sequence names the finish only when it is the reason: after a
        # call the turn ends in tool_calls, whatever text followed the call.
        events.append(Finish(reason, self.stop_sequence if reason == "stop" else None))
        return events

    def usage(self) -> Usage:
        """The turn's exact usage (encodes what is not counted yet; once
        the answer is over it may run on another thread)."""
        return Usage(self.prompt_tokens, self.completion_tokens, self.reasoning_tokens)

    @property
    def uncounted_chars(self) -> int:
        """Characters :meth:`usage` would still have to encode."""
        return self.counts.uncounted_chars

    @property
    def finish_reason(self) -> FinishReason:
        if self.filtered is not None:
            return "content_filter"
        if self.calls:
            return "tool_calls"
        if self.stop_sequence is not None:
            return "stop"
        if self.length_hit:
            return "length"
        return "stop"

    # -- internals -----------------------------------------------------------

    def _route(self, text: str) -> list[TurnEvent]:
        if not text:
            return []
        if self.sieve is not None:
            return self._track(self.sieve.feed(text))
        return self._text(self.cleaner.feed(text))

    def _text(self, text: str) -> list[TurnEvent]:
        """Plain answer text, as :meth:`_track` treats a lone TextDelta (the
        common case, without the list of events around it)."""
        matcher = self.stop_matcher
        if matcher.matched is not None:
            return []
        text = matcher.feed(text)
        if text and not self.shown:
            text = self._lead(text)
        if not text:
            return []
        if self.json_mode:
            self._json_buffer.append(text)
            return []
        self.emitted += 1
        return [TextDelta(text)]

    def _within_limit(self, text: str, counter: StreamCount, other: StreamCount) -> str:
        """``text`` cut on the token where reasoning plus answer reach the
        client's max_tokens (which then stops the turn)."""
        text, hit = self.counts.within_limit(text, counter, other)
        self.length_hit |= hit
        return text

    def _track(self, events: list) -> list[TurnEvent]:
        """Count and record events; answer text goes through the stop matcher
        (text only: a tool call is never cut, and nothing follows a match)."""
        out: list[TurnEvent] = []
        for ev in events:
            if self.stop_sequence is not None:
                break
            if isinstance(ev, TextDelta):
                text = self.stop_matcher.feed(ev.text)
                if text and not self.shown:
                    text = self._lead(text)
                if not text:
                    continue
                if text is not ev.text:
                    ev = TextDelta(text)
                if self.json_mode:
                    self._json_buffer.append(text)
                    continue
            elif isinstance(ev, ToolCallStart):
                out += self._release_held()
                if self.stop_sequence is not None:
                    break
                self._blank = ""  # whitespace before a call is not text
                self.calls += 1
                if ev.name in self._custom and ev.kind != "custom":
                    ev = ToolCallStart(ev.index, ev.id, ev.name, "custom")
            out.append(ev)
        return self._out(out)

    def _release_held(self) -> list[TurnEvent]:
        """Text the stop matcher held back, once no match can follow it
        (its tokens were counted when it arrived)."""
        held = self.stop_matcher.flush()
        if held and not self.shown:
            held = self._lead(held)
        if not held:
            return []
        if self.json_mode:
            self._json_buffer.append(held)
            return []
        self.emitted += 1
        return [TextDelta(held)]

    def _out(self, events: list[TurnEvent]) -> list[TurnEvent]:
        self.emitted += len(events)
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

