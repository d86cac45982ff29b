"""Markdown code fences, tracked incrementally (CommonMark's rule).

A tool block shown inside a fence is an example and must never run. The
sieve sees text in arbitrary chunks, so the tracker is fed piece by piece and
answers "is the next character inside a fence?" at any point; a fence marker
split across chunks is counted on.

A fence may sit in a container: a blockquote (``> ```xml``, its lines
quoted) or a list item (``- ```xml``). Inside a fence opened in a blockquote,
a line's ``>`` markers up to the opener's depth are its prefix, so a quoted
closing run closes it. CommonMark also ends such a fence at a line that leaves the quote;
here that line is still content, so an example quoted sloppily (one line
without its ``>``) never runs; like an unclosed fence, an unclosed quoted one
fences the rest of the answer.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

_START = 0  # in the line's prefix: blanks, ">" markers, a list marker
_RUN = 1  # counting a run of fence characters after the prefix
_CLOSE_TAIL = 2  # a possible closing run was seen; only blanks may follow
_REST = 3  # the rest of this line cannot change the fence state
_INFO = 4  # a backtick fence's info string: a backtick in it unmakes the fence

_NO_MARKER = 0
_BULLET = 1  # "-", "+" or "*": a list marker if a blank follows
_DIGITS = 2  # "12": an ordered list marker if "." or ")" and a blank follow
_ORDINAL = 3  # "12.": a list marker if a blank follows
_MAX_DIGITS = 9
_DIGIT_CHARS = "0123456789"


@dataclass(slots=True)
class FenceTracker:
    """Fence state after the text fed so far."""

    open_char: str = ""
    open_len: int = 0
    open_quotes: int = 0  # blockquote depth of the open fence's line
    phase: int = _START
    run_char: str = ""
    run_len: int = 0
    quotes: int = 0  # ">" markers read at the start of this line
    marker: int = _NO_MARKER
    digits: int = 0

    @classmethod
    def mid_line(cls) -> FenceTracker:
        """A tracker positioned inside a line that holds no fence marker."""
        return cls(phase=_REST)

    @property
    def in_fence(self) -> bool:
        return bool(self.open_char) or (self.phase == _RUN and self.run_len >= 3)

    def copy(self) -> FenceTracker:
        return copy.copy(self)

    def skip_line_rest(self) -> None:
        """Consumed (unshown) text ends mid-line, after a tag."""
        self.phase = _REST

    def feed(self, text: str, start: int = 0, end: int | None = None) -> None:
        i = start
        n = len(text) if end is None else end
        while i < n:
            if self.phase in (_REST, _INFO):
                i = self._line_end(text, i, n)
                if i < 0:
                    return
            ch = text[i]
            if ch == "`" and self.phase == _INFO:
                # "```js``` code" is inline code, no fence (CommonMark).
                self.open_char, self.open_len, self.open_quotes = "", 0, 0
                self.phase = _REST
            elif ch == "\n":
                self._end_line()
            elif self.phase == _START:
                self._at_start(ch)
            elif self.phase == _RUN:
                if ch == self.run_char:
                    self.run_len += 1
                else:
                    self._end_run()
                    continue
            elif ch not in " \t\r":
                self.phase = _REST
            i += 1

    def _line_end(self, text: str, i: int, n: int) -> int:
        """The next character that matters on this line (its newline, or a
        backtick in an info string); -1 when the text ends first."""
        newline = text.find("\n", i, n)
        if self.phase == _INFO:
            tick = text.find("`", i, n if newline < 0 else newline)
            if tick >= 0:
                return tick
        return newline

    def _at_start(self, ch: str) -> None:
        if self.marker != _NO_MARKER:
            self._in_marker(ch)
        elif ch in " \t":
            pass
        elif ch == ">" and not (self.open_char and self.quotes >= self.open_quotes):
            self.quotes += 1
        elif ch in "`~":
            self.phase, self.run_char, self.run_len = _RUN, ch, 1
        elif not self.open_char and ch in "-+*":
            self.marker = _BULLET
        elif not self.open_char and ch in _DIGIT_CHARS:
            self.marker, self.digits = _DIGITS, 1
        else:
            self.phase = _REST

    def _in_marker(self, ch: str) -> None:
        """A list marker being read: it ends with a blank, or the prefix does."""
        if self.marker == _DIGITS and ch in _DIGIT_CHARS and self.digits < _MAX_DIGITS:
            self.digits += 1
        elif self.marker == _DIGITS and ch in ".)":
            self.marker = _ORDINAL
        elif self.marker != _DIGITS and ch in " \t":
            self.marker = _NO_MARKER
        else:
            self.marker, self.phase = _NO_MARKER, _REST

    def _end_run(self) -> None:
        if not self.open_char and self.run_len >= 3:
            self.open_char, self.open_len = self.run_char, self.run_len
            self.open_quotes = self.quotes
            self.phase = _INFO if self.run_char == "`" else _REST
        elif self.run_char == self.open_char and self.run_len >= self.open_len:
            self.phase = _CLOSE_TAIL
        else:
            self.phase = _REST

    def _end_line(self) -> None:
        if self.phase == _RUN:
            self._end_run()
        if self.phase == _CLOSE_TAIL:
            self.open_char, self.open_len, self.open_quotes = "", 0, 0
        self.phase, self.quotes, self.marker = _START, 0, _NO_MARKER


_CODE_MARK = re.compile(r"`+|\n")


class CodeSpans:
    """Whether the next character is code: in a fenced block or an inline
    code span (a backtick run up to the next run of the same length, on one
    line, as the tool segmenter reads spans). Fed piece by piece; a backtick
    run cut between two pieces counts as one run."""

    __slots__ = ("fence", "inline", "_carry", "_run_at_start", "_run_fenced")

    def __init__(self) -> None:
        self.fence = FenceTracker()
        self.inline = 0  # backtick count of the open inline span, 0 when none
        self._carry = 0  # a backtick run that reached the end of the last piece
        self._run_at_start = False
        self._run_fenced = False

    def inside(self) -> bool:
        """For a next character that is no backtick."""
        self._settle()
        return self.inline > 0 or self.fence.in_fence

    def feed(self, text: str, start: int = 0, end: int | None = None) -> None:
        end = len(text) if end is None else end
        pos = start
        for mark in _CODE_MARK.finditer(text, start, end):
            if mark.start() > pos:
                self._settle()
                self.fence.feed(text, pos, mark.start())
            pos = mark.end()
            if mark.group() == "\n":
                self._settle()
                self.inline = 0
                self.fence.feed("\n")
                continue
            if not self._carry:
                self._run_at_start = self.fence.phase in (_START, _RUN)
                self._run_fenced = self.fence.in_fence
            self._carry += pos - mark.start()
            self.fence.feed(text, mark.start(), pos)
            if pos < end:
                self._settle()
        if pos < end:
            self._settle()
            self.fence.feed(text, pos, end)

    def _settle(self) -> None:
        """The backtick run read last has ended: open or close a span."""
        run, self._carry = self._carry, 0
        if not run:
            return
        if self._run_fenced or (self._run_at_start and run >= 3):
            self.inline = 0  # a fence marker, or code inside a fence
        elif not self.inline:
            self.inline = run
        elif run == self.inline:
            self.inline = 0
