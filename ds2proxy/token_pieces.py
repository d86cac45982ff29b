"""Safe boundaries, and the token counts of the short pieces between them.

A *safe boundary* is a place where the tokenizer's pre-tokenizer always
splits, whatever surrounds it, so counting the text on each side separately
gives exactly the count of the whole:

- after a newline, before a non-space character (no pre-token crosses it),
- between an ASCII letter and a space followed by an ASCII letter (the word
  before ends there; `` word`` starts a new pre-token),
- where a run of CJK characters starts or ends (the pre-tokenizer isolates
  such runs before anything else).

No added token of the vocabulary holds whitespace, so none crosses one either.
Between boundaries lie short pieces (`` word``, ``word.\\n``) that recur all
the time in answers, so their counts are cached: a streamed answer is mostly
counted by dictionary look-ups, and only unseen pieces are encoded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .tokenizer import load

_CJK = "\u3040-\u30ff\u4e00-\u9fa5"
_EDGE = re.compile(rf"[A-Za-z](?= [A-Za-z])|\n(?=\S)|[{_CJK}]+")
PIECE_CHARS = 48
PIECE_ENTRIES = 200_000

_pieces: dict[str, int] = {}


def _is_cjk(ch: str) -> bool:
    return "\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fa5"


def boundaries(text: str, lo: int = 0, hi: int | None = None) -> Iterator[int]:
    """The safe boundaries of ``text`` at or after ``lo``, ascending, inside
    the text (never 0 nor its length); with ``hi``, only those the text up to
    ``hi`` shows (the scan stops there: one near ``hi`` may be missed)."""
    hi = len(text) if hi is None else min(hi, len(text))
    if text.isascii():
        if text.find(" ", lo, hi) < 0 and text.find("\n", lo, hi) < 0:
            return iter(())  # one long word (or code without spaces): no scan
        # No CJK run: every match is one character whose end is the boundary.
        # Lazy, as callers often take only the first (a list made cutting a
        # long text into many segments quadratic).
        return map(re.Match.end, _EDGE.finditer(text, lo, hi))
    return _boundaries(text, lo, hi)


def _boundaries(text: str, lo: int, hi: int | None = None) -> Iterator[int]:
    hi = len(text) if hi is None else hi
    last = -1
    for match in _EDGE.finditer(text, lo, hi):
        start, end = match.span()
        edges = (end,)
        if _is_cjk(text[start]):
            # A run the scan's end cut short may go on: its end is no edge.
            left = start > 0 and not _is_cjk(text[start - 1])
            edges = ((start,) if left else ()) + ((end,) if end < hi else ())
        for edge in edges:
            if edge != last:
                last = edge
                yield edge


def count_cut(text: str, starts: list[int]) -> int:
    """Tokens of ``text`` cut into pieces at ``starts`` (0 first, then safe
    boundaries): cached pieces are looked up, runs of unseen ones encoded."""
    total = 0
    run: list[int] = []
    ends = [*starts[1:], len(text)]
    for start, end in zip(starts, ends):
        tokens = _pieces.get(text[start:end])
        if tokens is None:
            run.append(start)
            continue
        if run:
            total += _encode_run(text, run, start)
            run = []
        total += tokens
    if run:
        total += _encode_run(text, run, len(text))
    return total


def count_piece(text: str) -> int:
    """Tokens of one text, through the piece cache."""
    return count_cut(text, [0]) if text else 0


def _encode_run(text: str, starts: list[int], end: int) -> int:
    """Encode consecutive unseen pieces in one call and remember each one's count."""
    base = starts[0]
    counts = load().piece_counts(text[base:end], [s - base for s in starts])
    if len(_pieces) > PIECE_ENTRIES:
        _pieces.clear()
    for start, stop, tokens in zip(starts, [*starts[1:], end], counts):
        if stop - start <= PIECE_CHARS:
            _pieces[text[start:stop]] = tokens
    return sum(counts)
