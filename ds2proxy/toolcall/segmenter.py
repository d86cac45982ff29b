"""The streaming sieve's core: model text in, ordered text and call events out.

Text is released as soon as it cannot be the start of a tool tag; from a
tool tag on it is captured until the capture is decided (see ``capture``).
Calls are emitted in document order with one index counter for the whole
response. Besides the canonical call events it reports every piece of
model text exactly once, as ``RawText`` (shown) or ``Consumed`` (a block that
became calls or was suppressed), so nothing can be lost or shown twice.

Outside a candidate block, CDATA markers and comments are ordinary prose: a
prose mention of ``<![CDATA[`` must neither hold the stream back nor hide
the real block that follows it. Inside a block they are ignored regions.
The early-emission setting changes when calls come out, never which: a
block whose wrapper never closes yields its finished invokes in every mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ds2proxy.canonical import ToolCallArgs, ToolCallEnd, ToolCallStart
from ds2proxy.toolcall.capture import CaptureScan, Verdict, WrapperWalk, scan_capture
from ds2proxy.toolcall.cdata import CDATA_OPEN
from ds2proxy.toolcall.fences import FenceTracker
from ds2proxy.toolcall.invoke import Call, CallBuilder, InvokeSpan
from ds2proxy.toolcall.tags import MAX_LT_RUN, Head, Scan, scan_head
from ds2proxy.toolcall.tokens import Tokenizer

log = logging.getLogger("ds2proxy.toolcall")

EarlyEmit = Literal["high", "low", "off"]
CallEvent = ToolCallStart | ToolCallArgs | ToolCallEnd


@dataclass(frozen=True, slots=True)
class RawText:
    """Model text to show (before cleaning)."""

    text: str


@dataclass(frozen=True, slots=True)
class Consumed:
    """Model text taken out of the visible text: a call block or a broken one."""

    text: str


Event = RawText | Consumed | CallEvent


@dataclass(slots=True)
class _Capture:
    """A candidate block. Chunks are kept as a list and joined only when the
    block is scanned, and a scan that only a new tag can change is not
    repeated for chunks that cannot complete one (a long body streamed in
    tiny chunks costs linear time, not quadratic)."""

    parts: list[str]
    after_block: bool = False  # only blanks between the previous block and this
    handled: int = 0  # invokes of this block already turned into calls (or refused)
    started: dict[int, ToolCallStart] = field(default_factory=dict)  # "low": open calls
    emitted: bool = False
    repaired: bool = False
    cut_at: int | None = None  # where the loose-CDATA repair removed an opener
    tokenizer: Tokenizer = field(default_factory=Tokenizer)
    walk: WrapperWalk = field(default_factory=WrapperWalk)
    settled: bool = False  # the last scan stands until the tokenizer reads a new tag
    tail: str = ""  # the last two characters of the text

    @property
    def text(self) -> str:
        if len(self.parts) != 1:
            self.parts[:] = ["".join(self.parts)]
        return self.parts[0]

    def add(self, text: str) -> bool:
        """Append ``text``; whether the block must be scanned again."""
        if not text:
            return not self.settled
        stale = not self.settled or self.tokenizer.may_change(self.tail, text)
        self.parts.append(text)
        self.tail = (self.tail + text)[-2:]
        return stale

    def scan(self, *, final: bool) -> CaptureScan:
        scan = scan_capture(self.text, final=final, tokenizer=self.tokenizer, walk=self.walk,
                            after_block=self.after_block)
        self.settled = scan.settled and not final
        return scan

    def replace(self, text: str, cut_at: int) -> None:
        self.parts, self.cut_at, self.settled = [text], cut_at, False
        self.tokenizer, self.walk = Tokenizer(), WrapperWalk()

    def original(self, end: int) -> str:
        """``text[:end]`` as the model wrote it (with a removed opener restored)."""
        text = self.text
        if self.cut_at is None or end <= self.cut_at:
            return text[:end]
        return text[:self.cut_at] + CDATA_OPEN + text[self.cut_at:end]


class Segmenter:
    """Splits model text into shown text, consumed blocks and call events."""

    def __init__(self, builder: CallBuilder, *, early_emit: EarlyEmit, single_call: bool,
                 new_call_id: Callable[[], str], first_index: int = 0) -> None:
        self._builder = builder
        self._early = early_emit
        self._single = single_call
        self._new_id = new_call_id
        self.next_index = first_index
        self.calls = 0
        self.block_cut = False  # the stream ended inside a tool block
        self._pending = ""
        self._capture: _Capture | None = None
        self._fence = FenceTracker()
        self._after_block = False  # nothing but blanks shown since the last block

    def feed(self, text: str) -> list[Event]:
        self._pending += text
        return self._run(final=False)

    def flush(self) -> list[Event]:
        """End of stream: decide the capture and release everything held."""
        out = self._run(final=True)
        while self._capture is not None:
            out += self._settle()
            out += self._run(final=True)
        return out

    # -- main loop ---------------------------------------------------------

    def _run(self, *, final: bool) -> list[Event]:
        out: list[Event] = []
        while True:
            if self._capture is not None:
                stale = self._capture.add(self._pending)
                self._pending = ""
                if not (stale or final) or not self._step_capture(final, out):
                    return out
            elif not self._pending or not self._scan_text(final, out):
                return out

    def _scan_text(self, final: bool, out: list[Event]) -> bool:
        """Release text up to the first tool tag outside a fence and start
        capturing there (True), or release what cannot start one (False)."""
        text = self._pending
        fence = self._fence
        fed = pos = 0
        while (at := text.find("<", pos)) >= 0:
            fence.feed(text, fed, at)
            fed = at
            head = Scan.NO if fence.in_fence else scan_head(text, at, final=final)
            if isinstance(head, Head):
                self._release(text[:at], out, fed_already=True)
                self._pending = ""
                held = text[at:]
                self._capture = _Capture([held], after_block=self._after_block, tail=held[-2:])
                return True
            if head is Scan.PARTIAL:
                self._release(text[:at], out, fed_already=True)
                self._pending = text[at:]
                return False
            pos = at + 1
            while pos < len(text) and text[pos] == "<":
                pos += 1
            # A run too long for a tag may still end in one's extra "<"s.
            pos = max(at + 1, pos - MAX_LT_RUN) if pos - at > MAX_LT_RUN else pos
        fence.feed(text, fed)
        self._release(text, out, fed_already=True)
        self._pending = ""
        return False

    def _release(self, text: str, out: list[Event], *, fed_already: bool = False) -> None:
        if not fed_already:
            self._fence.feed(text)
        if text:
            out.append(RawText(text))
            self._after_block = self._after_block and not text.strip()

    # -- captures ----------------------------------------------------------

    def _step_capture(self, final: bool, out: list[Event]) -> bool:
        """Advance the capture; True when it was resolved and scanning goes on."""
        capture = self._capture
        assert capture is not None
        scan = capture.scan(final=final)
        if scan.verdict is Verdict.RELEASE:
            self._capture = None
            self._release(capture.text[:scan.end], out)
            self._pending = capture.text[scan.end:] + self._pending
            return True
        if scan.verdict is Verdict.BLOCK:
            out += self._emit_invokes(capture, scan, complete=True)
            self._consume(capture, scan.end, out)
            return True
        if scan.verdict is Verdict.OPEN and self._early != "off":
            out += self._emit_invokes(capture, scan, complete=False)
        return False

    def _consume(self, capture: _Capture, end: int, out: list[Event]) -> None:
        out.append(Consumed(capture.original(end)))
        self._capture = None
        self._pending = capture.text[end:] + self._pending
        self._fence.skip_line_rest()
        self._after_block = True

    def _settle(self) -> list[Event]:
        """End of stream with a capture still open (§4.7)."""
        capture = self._capture
        assert capture is not None
        scan = capture.scan(final=True)
        if not capture.repaired:
            capture.repaired = True
            cut_at = scan.tokens.unclosed_cdata
            if cut_at is not None:
                repaired = capture.text[:cut_at] + capture.text[cut_at + len(CDATA_OPEN):]
                if self._would_call(capture, repaired):
                    capture.replace(repaired, cut_at)
                    return []
        out: list[Event] = []
        if scan.verdict is Verdict.OPEN:
            self.block_cut = True
            out += self._emit_invokes(capture, scan, complete=True)
        for index in sorted(capture.started):
            out += self._finish_started(capture, index, None)
        if capture.emitted:
            if capture.text.strip():
                log.info("dropped an unfinished tool block after its calls (%d chars)",
                         len(capture.text))
            self._consume(capture, len(capture.text), out)
        else:
            self._capture = None
            self._release(capture.original(len(capture.text)), out)
        return out

    def _would_call(self, capture: _Capture, text: str) -> bool:
        """Whether the repaired block holds a call, counting calls it already
        emitted (so the answer does not depend on when calls were emitted)."""
        scan = scan_capture(text, final=True)
        if scan.verdict not in (Verdict.BLOCK, Verdict.OPEN):
            return False
        if not (capture.emitted or self._may_accept()):
            return False
        return any(self._builder.build(text, s, scan.tokens) is not None for s in scan.invokes)

    # -- emission ----------------------------------------------------------

    def _emit_invokes(self, capture: _Capture, scan: CaptureScan, *,
                      complete: bool) -> list[Event]:
        """Calls for the invokes not handled yet; ``complete`` when the block
        is over (or the stream is), else only what early emission allows."""
        if not scan.early and not complete:
            return []
        out: list[Event] = []
        index = capture.handled
        while (span := scan.span(index)) is not None:
            if self._early == "low" and scan.early and index not in capture.started:
                self._start_early(capture, index, span, out)
            if span.close is None:
                break
            call = self._builder.build(capture.text, span, scan.tokens)
            if call is None:
                self._builder.explain_refusal(span)
            if index in capture.started:
                out += self._finish_started(capture, index, call)
            elif call is not None and self._may_accept():
                out += self._start(capture, call) + self._finish(call, self.next_index - 1)
            capture.handled = index = index + 1
        return out

    def _start_early(self, capture: _Capture, index: int, span: InvokeSpan,
                     out: list[Event]) -> None:
        tool = self._builder.tool_for(span)
        if tool is not None and self._may_accept():
            start = self._start(capture, Call(tool.name, "", tool.kind))
            capture.started[index] = start[0]
            out += start

    def _finish_started(self, capture: _Capture, index: int, call: Call | None) -> list[Event]:
        start = capture.started.pop(index)
        if call is None:
            call = Call(start.name, "" if start.kind == "custom" else "{}", start.kind)
        return self._finish(call, start.index)

    def _may_accept(self) -> bool:
        return not (self._single and self.calls)

    def _start(self, capture: _Capture, call: Call) -> list[Event]:
        index = self.next_index
        self.next_index += 1
        self.calls += 1
        capture.emitted = True
        return [ToolCallStart(index, self._new_id(), call.name, call.kind)]

    @staticmethod
    def _finish(call: Call, index: int) -> list[Event]:
        return [ToolCallArgs(index, call.arguments), ToolCallEnd(index)]

