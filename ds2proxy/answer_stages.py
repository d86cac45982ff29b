"""The stages an answer's text passes before a client sees it.

After citation styling, answer text goes through the tool-call sieve (tools
declared, ``feature_match``) or the text cleaner, then the client's stop
sequences, then the leading-whitespace hold (nothing blank goes out before
visible text), and in JSON mode into a buffer checked at the end.
:class:`AnswerStages` holds that state; :class:`~ds2proxy.shaping.TurnShaper`
builds on it with the limits, reasoning and the end of the turn.
"""

from __future__ import annotations

from .canonical import ChatRequest, TextDelta, ToolCallStart, TurnEvent
from .stops import StopMatcher, StopPieces, stops_of
from .toolcall.clean import TextCleaner
from .toolcall.sieve import ToolSieve


class AnswerStages:
    def __init__(self, chat: ChatRequest, toolcall_mode: str, early_emit: str) -> None:
        self.chat = chat
        self._custom = {t.name for t in chat.tools if t.kind == "custom"}
        self._early_emit = early_emit
        use_sieve = bool(chat.tools) and toolcall_mode == "feature_match"
        self.sieve = self._new_sieve() if use_sieve else None
        self.cleaner = None if use_sieve else TextCleaner()
        # Whether any visible answer text (not only whitespace) went out: the
        # answer itself is not kept, a long one would stay in memory to the end.
        self.shown = False
        self._blank = ""  # whitespace held until visible text follows (_lead)
        self.calls = 0
        self.emitted = 0
        self.json_mode = chat.response_format.type != "text"
        self._json_buffer: list[str] = []
        self._stops = stops_of(chat.sampling)
        self.stop_matcher = StopMatcher(self._stops)
        self._stop_pieces = StopPieces(self._stops)

    def _new_sieve(self) -> ToolSieve:
        chat = self.chat
        return ToolSieve(chat.tools, chat.tool_choice, early_emit=self._early_emit,
                         single_call=not chat.parallel_tool_calls)

    def _restart_stages(self) -> None:
        """Fresh text state for a second try of the answer."""
        self._json_buffer.clear()
        self.shown = False
        self._blank = ""
        self.stop_matcher = StopMatcher(self._stops)
        self._stop_pieces = StopPieces(self._stops)
        if self.sieve is not None:
            self.sieve = self._new_sieve()
        else:
            self.cleaner = TextCleaner()

    @property
    def stop_sequence(self) -> str | None:
        """The client's stop sequence that ended the answer, if one did."""
        return self.stop_matcher.matched

    # -- leading whitespace ---------------------------------------------------

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

    # -- sieve or cleaner, then the stop matcher -------------------------------

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
