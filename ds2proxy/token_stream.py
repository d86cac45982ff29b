"""Exact token count of a text that arrives in fragments, and the cut at a limit.

Fragments rarely end on token boundaries, so counting each one (and adding)
overcounts. :class:`StreamCount` keeps the text since the last safe boundary
(see :mod:`ds2proxy.token_pieces`) as an open tail: everything before it is
counted once, piece by piece through the piece cache, and never again. Under
a limit counting is lazy: a UTF-8 byte is never less than a token, so while
the known count plus the bytes since stays below the limit nothing is counted.

Fragments are kept as a list and joined only when a count needs the text, so
an answer with no safe boundary for a long stretch (one long word, code
without spaces) costs the same per fragment as any other; each scan for a
boundary starts where the last one stopped.

A stretch with no safe boundary at all (a line of ``=`` or ``-``, a model
repeating one letter, a long run of CJK) stays one open tail. Without a
limit it is counted once, at the end. Under a limit every count near the
cap would encode the whole run again (a run of ``=`` near max_tokens 4096
cost 34 s of loop time), so there, past ``LONG_RUN`` characters, the tail is
encoded once and closed at a token end at least ``RUN_KEEP`` characters
before its end (a *soft* boundary): BPE settles a word's tokens from its
start, and text appended later only re-forms the last few; tests compare
such counts with whole-text counts on long runs.
"""

from __future__ import annotations

from itertools import accumulate

from .token_pieces import boundaries, count_cut
from .tokenizer import load

COMMIT_CHARS = 256
LONG_RUN = 4096  # characters of an open tail with no safe boundary before a soft one
RUN_KEEP = 1024  # characters a soft boundary leaves open after it


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class StreamCount:
    """Tokens of one streamed text (the answer, or the reasoning) so far."""

    def __init__(self) -> None:
        self._done = 0          # tokens before the tail, final
        self._head = ""         # the tail's text as last joined
        self._parts: list[str] = []  # fragments fed since, not joined yet
        self._size = 0          # characters of the tail (head and parts)
        self._scanned = 0       # the tail holds no safe boundary before this
        self._exact = 0         # tokens of everything fed, when _fresh
        self._fresh = True
        self._unknown_bytes = 0  # bytes fed since _exact was computed
        self._next_commit = COMMIT_CHARS
        self._limited = False   # fed under a limit: long runs close at soft boundaries

    @property
    def upper_bound(self) -> int:
        """Never below the exact count; costs nothing."""
        return self._exact + self._unknown_bytes

    @property
    def _tail(self) -> str:
        """The text since the last safe boundary committed."""
        if self._parts:
            self._head = "".join([self._head, *self._parts])
            self._parts.clear()
        return self._head

    @_tail.setter
    def _tail(self, text: str) -> None:
        self._head = text
        self._parts.clear()
        self._size = len(text)
        self._scanned = 0

    @property
    def uncounted_chars(self) -> int:
        """Characters :meth:`total` would still have to encode."""
        return 0 if self._fresh else self._size

    def feed(self, text: str) -> None:
        """Append a fragment; counting waits for a safe boundary or total()."""
        if not text:
            return
        self._parts.append(text)
        self._size += len(text)
        self._fresh = False
        self._unknown_bytes += len(text) if text.isascii() else len(text.encode("utf-8"))
        if self._size >= self._next_commit:
            self._commit()

    def total(self) -> int:
        """Exact tokens of everything fed."""
        if not self._fresh:
            tail = self._tail
            self._exact = self._done + count_cut(tail, [0, *boundaries(tail)])
            self._fresh = True
            self._unknown_bytes = 0
        return self._exact

    def feed_within(self, text: str, cap: int) -> tuple[str, bool]:
        """Feed as much of ``text`` as keeps the count at most ``cap``: the
        part taken and whether the text went past ``cap`` (it was then cut
        on the boundary after the cap-th token)."""
        self._limited = True
        if self.upper_bound + _utf8_len(text) < cap:
            self.feed(text)
            return text, False
        if self._size >= LONG_RUN:  # only text already sent may be closed
            self._close_run(self._tail)
        keep = self._size
        self._parts.append(text)
        self._size += len(text)
        self._fresh = False
        if self.total() <= cap:
            # At the cap the last token may still grow with the next fragment
            # ("Hel" + "lo"), so the cut waits for a count above it.
            if self._size >= self._next_commit:
                self._commit()
            return text, False
        kept = self._cut(cap - self._done, keep=keep)
        return text[:kept - keep], True

    # -- internals -----------------------------------------------------------

    def _commit(self) -> None:
        """Count the tail up to its last safe boundary and close that part."""
        tail = self._tail
        # A boundary needs up to two characters after it: look again there.
        cuts = list(boundaries(tail, self._scanned))
        if not cuts:
            if self._limited and len(tail) >= LONG_RUN and self._close_run(tail):
                return
            self._scanned = max(0, len(tail) - 2)
            self._next_commit = (min(2 * len(tail), max(LONG_RUN, len(tail) + RUN_KEEP))
                                 if self._limited else 2 * len(tail))
            return
        head = tail[:cuts[-1]]
        self._tail = tail[cuts[-1]:]
        self._done += count_cut(head, [0, *cuts[:-1]])
        self._next_commit = COMMIT_CHARS

    def _close_run(self, tail: str) -> bool:
        """Count a long tail with no safe boundary up to a soft one (a token
        end ``RUN_KEEP`` characters or more before its end, on a character
        boundary) and close that part; False if it has none."""
        tokenizer = load()
        ids = tokenizer.encode_many([tail])[0]
        data = tail.encode("utf-8")
        limit = len(data) - RUN_KEEP
        ends = list(accumulate(map(tokenizer.byte_length, ids)))
        for n in range(len(ends) - 1, -1, -1):
            end = ends[n]
            if end <= limit and (data[end] & 0xC0) != 0x80:  # not inside a character
                head = len(data[:end].decode("utf-8"))
                self._done += n + 1
                self._tail = tail[head:]
                self._next_commit = LONG_RUN
                return True
        return False

    def _cut(self, budget: int, keep: int) -> int:
        """Shorten the tail to at most ``budget`` tokens, as close to it as a
        character boundary allows, but not below ``keep`` characters (already
        sent); returns the tail's new length."""
        tokenizer = load()
        ids = tokenizer.encode_many([self._tail])[0]
        data = self._tail.encode("utf-8")
        ends = [0]
        for token_id in ids:
            ends.append(ends[-1] + tokenizer.byte_length(token_id))
        for n in range(min(budget, len(ids)), -1, -1):
            head = data[:ends[n]].decode("utf-8", errors="ignore")
            tokens = _count(head)
            if tokens <= budget or len(head) <= keep:
                head = head if len(head) >= keep else self._tail[:keep]
                tokens = _count(head)
                self._tail = head
                self._exact, self._fresh, self._unknown_bytes = self._done + tokens, True, 0
                return len(head)
        raise AssertionError("the empty text has no tokens")


def _count(text: str) -> int:
    """Tokens of a short stream tail (kept out of the prompt cache)."""
    return load().count_many([text])[0] if text else 0
