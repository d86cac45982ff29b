"""Markdown code fences, tracked incrementally (CommonMark's rule).

A tool block shown inside a fence is an example and must never run. The
sieve sees text in arbitrary chunks, so the tracker is fed piece by piece and
answers "is the next character inside a fence?" at any point; a fence marker
split across chunks is counted on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

_START = 0  # only spaces/tabs so far on this line
_RUN = 1  # counting a run of fence characters at the line start
_CLOSE_TAIL = 2  # a possible closing run was seen; only blanks may follow
_REST = 3  # the rest of this line cannot change the fence state


@dataclass(slots=True)
class FenceTracker:
    """Fence state after the text fed so far."""

    open_char: str = ""
    open_len: int = 0
    phase: int = _START
    run_char: str = ""
    run_len: int = 0

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
            if self.phase == _REST:
                newline = text.find("\n", i, n)
                if newline < 0:
                    return
                i = newline
            ch = text[i]
            if ch == "\n":
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

    def _at_start(self, ch: str) -> None:
        if ch in "`~":
            self.phase, self.run_char, self.run_len = _RUN, ch, 1
        elif ch not in " \t":
            self.phase = _REST

    def _end_run(self) -> None:
        if not self.open_char and self.run_len >= 3:
            self.open_char, self.open_len = self.run_char, self.run_len
            self.phase = _REST
        elif self.run_char == self.open_char and self.run_len >= self.open_len:
            self.phase = _CLOSE_TAIL
        else:
            self.phase = _REST

    def _end_line(self) -> None:
        if self.phase == _RUN:
            self._end_run()
        if self.phase == _CLOSE_TAIL:
            self.open_char, self.open_len = "", 0
        self.phase = _START
