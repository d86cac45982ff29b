"""From upstream text to canonical turn events.

:class:`TurnShaper` receives the parser's answer and reasoning chunks and
produces what a client may see: reasoning deltas (only when thinking is
shown), cleaned answer text with citation markers styled, tool calls found by
the sieve, and at the end citations, usage and the finish reason. The
answer's text stages (sieve or cleaner, stop sequences, leading whitespace,
the JSON buffer) are its base, :class:`~ds2proxy.answer_stages.AnswerStages`;
here are the inputs, max_tokens and the end of the turn. It holds no I/O, so
the pipeline and the tests drive it the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .answer_stages import AnswerStages
from .canonical import (
    ChatRequest,
    Citation,
    Finish,
    FinishReason,
    ReasoningDelta,
    TextDelta,
    TextRun,
    TurnEvent,
    Usage,
)
from .citations import CitationRewriter
from .errors import ToolChoiceViolation
from .structured import JSONOutputError, settle
from .token_stream import StreamCount
from .turn_counts import TurnCounts
from .toolcall.clean import RULE_START as _SPECIAL


@dataclass(frozen=True, slots=True)
class ShapingSettings:
    toolcall_mode: str = "feature_match"
    early_emit: str = "high"
    citation_style: str = "raw"


class TurnShaper(AnswerStages):
    def __init__(self, chat: ChatRequest, settings: ShapingSettings, prompt_tokens: int,
                 citations: Callable[[], list[tuple[int, str, str]]]) -> None:
        super().__init__(chat, settings.toolcall_mode, settings.early_emit)
        self.show_reasoning = chat.thinking_enabled
        self.prompt_tokens = prompt_tokens
        self._citations = citations
        self.rewriter = CitationRewriter(settings.citation_style, url_lookup(citations))
        self.reasoning: list[str] = []
        self.counts = TurnCounts(chat.max_tokens)
        self.length_hit = False
        self.filtered: str | None = None
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
        self.counts.restart()
        self._restart_stages()

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
        if self.length_hit and self.sieve is not None and self.sieve.block_cut:
            # max_tokens ended the answer inside a tool block: the call being
            # written is lost (or cut), and the client must hear so.
            return "length"
        if self.calls:
            return "tool_calls"
        if self.stop_sequence is not None:
            return "stop"
        if self.length_hit:
            return "length"
        return "stop"

    # -- internals -----------------------------------------------------------

    def _within_limit(self, text: str, counter: StreamCount, other: StreamCount) -> str:
        """``text`` cut on the token where reasoning plus answer reach the
        client's max_tokens (which then stops the turn)."""
        text, hit = self.counts.within_limit(text, counter, other)
        self.length_hit |= hit
        return text


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

