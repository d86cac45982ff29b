"""The tool tags of a candidate block, with CDATA, comments and fences skipped.

Tags inside a CDATA section, an XML comment or a Markdown fence are text.
The scan stops where the text seen so far cannot decide what comes next (a
tag cut off mid-way, a CDATA section whose end is not yet known), so every
token it returns stays valid however the text continues — which also lets
it resume there when more text arrives instead of starting over.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from ds2proxy.toolcall.cdata import CDATA_CLOSE, CDATA_OPEN, UNCLOSED, CDataEnd
from ds2proxy.toolcall.fences import FenceTracker
from ds2proxy.toolcall.tags import Scan, Tag, read_tag

COMMENT_OPEN = "<!--"
COMMENT_CLOSE = "-->"


@dataclass(frozen=True, slots=True)
class CDataSpan:
    start: int
    content_start: int
    content_end: int
    end: int


@dataclass(slots=True)
class Tokens:
    """Tags and CDATA sections in ``text[:stop]``; after ``stop`` nothing is known.

    ``unclosed_cdata`` (only for a finished text) is the offset of a CDATA
    opener that never closes.
    """

    tags: list[Tag] = field(default_factory=list)
    cdata: list[CDataSpan] = field(default_factory=list)
    stop: int = 0
    unclosed_cdata: int | None = None
    _starts: list[int] = field(default_factory=list)

    def add(self, tag: Tag) -> None:
        self.tags.append(tag)
        self._starts.append(tag.start)

    def index_of(self, tag: Tag) -> int:
        """Where ``tag`` (one of these) is in ``tags``."""
        return bisect.bisect_left(self._starts, tag.start)

    def tag_at(self, pos: int) -> Tag | None:
        i = bisect.bisect_left(self._starts, pos)
        return self.tags[i] if i < len(self.tags) and self._starts[i] == pos else None


class Tokenizer:
    """Tokenises a text that only ever grows at its end."""

    def __init__(self) -> None:
        self.tokens = Tokens()
        self._fence = FenceTracker.mid_line()
        self._pos = 0
        self._fed = 0
        self._cdata: CDataEnd | None = None  # a section opened at _pos, end not found yet
        self._comment_scan = 0  # where the search for an open comment's end resumes
        # What the scan stopped waiting for: only text holding it can add a token.
        self._awaits: str | None = None

    def may_change(self, tail: str, added: str) -> bool:
        """Whether appending ``added`` to the text last advanced over (which
        ends in ``tail``, its last two characters) can add a token: False
        while the scan waits for a marker that ``added`` does not complete."""
        if self._awaits is None:
            return True
        if len(self._awaits) > 1:
            added = tail[-len(self._awaits) + 1:] + added
        return self._awaits in added

    def advance(self, text: str, *, final: bool) -> Tokens:
        tokens = self.tokens
        tokens.unclosed_cdata = None
        self._awaits = None
        while True:
            if self._cdata is not None and not self._close_cdata(text, final):
                return tokens
            at = text.find("<", self._pos)
            if at < 0:
                tokens.stop = self._pos = len(text)
                self._awaits = "<"
                return tokens
            self._fence.feed(text, self._fed, at)
            self._fed = self._pos = at
            if self._fence.in_fence:
                self._pos = at + 1
            elif text.startswith(CDATA_OPEN, at):
                self._cdata = CDataEnd(at + len(CDATA_OPEN))
            elif not self._step(text, at, final):
                tokens.stop = at
                return tokens

    def _close_cdata(self, text: str, final: bool) -> bool:
        """Finish the open section; False when the scan must stop there."""
        search = self._cdata
        assert search is not None
        close = search.find(text, final=final)
        if close is None and search.resume >= len(text) - len(CDATA_CLOSE) + 1:
            self._awaits = CDATA_CLOSE
        if close is None or close == UNCLOSED:
            self.tokens.stop = self._pos if close is None else len(text)
            self.tokens.unclosed_cdata = self._pos if close == UNCLOSED else None
            return False
        end = close + len(CDATA_CLOSE)
        self.tokens.cdata.append(CDataSpan(self._pos, search.content_start, close, end))
        self._cdata = None
        self._skip_to(end)
        return True

    def _step(self, text: str, at: int, final: bool) -> bool:
        """Read what starts at ``at``; False when it cannot be decided yet."""
        if text.startswith(COMMENT_OPEN, at):
            # Resumed where the last search stopped: a long comment is read once.
            close = text.find(COMMENT_CLOSE, max(at + len(COMMENT_OPEN), self._comment_scan))
            if close < 0:
                self._comment_scan = max(at + len(COMMENT_OPEN), len(text) - 2)
                self._awaits = None if final else COMMENT_CLOSE
                return final and self._skip_to(len(text))
            return self._skip_to(close + len(COMMENT_CLOSE))
        rest = text[at:at + len(CDATA_OPEN)]
        if not final and len(rest) < len(CDATA_OPEN) and (
                CDATA_OPEN.startswith(rest) or COMMENT_OPEN.startswith(rest)):
            return False
        tag = read_tag(text, at, final=final)
        if tag is Scan.PARTIAL:
            return False
        if tag is Scan.NO:
            self._pos = at + 1
        else:
            self.tokens.add(tag)
            self._pos = tag.end
        return True

    def _skip_to(self, end: int) -> bool:
        """Continue after an ignored region (which ends mid-line)."""
        self._pos = self._fed = end
        self._fence.skip_line_rest()
        return True

