"""Exact token count of a text that arrives in fragments, and the cut at a limit.

Fragments rarely end on token boundaries, so counting each one (and adding)
overcounts. :class:`StreamCount` keeps the text since the last safe boundary
(see :mod:`ds2proxy.token_pieces`) as an open tail: everything before it is
counted once, piece by piece through the piece cache, and never again. Under
a limit counting is lazy: a UTF-8 byte is never less than a token, so while
the known count plus the bytes since stays below the limit nothing is counted.
"""

from __future__ import annotations

from .token_pieces import boundaries, count_cut
from .tokenizer import load

COMMIT_CHARS = 256


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class StreamCount:
    """Tokens of one streamed text (the answer, or the reasoning) so far."""

    def __init__(self) -> None:
        self._done = 0          # tokens before the tail, final
        self._tail = ""         # text since the last safe boundary committed
        self._exact = 0         # tokens of everything fed, when _fresh
        self._fresh = True
        self._unknown_bytes = 0  # bytes fed since _exact was computed
        self._next_commit = COMMIT_CHARS

    @property
    def upper_bound(self) -> int:
        """Never below the exact count; costs nothing."""
        return self._exact + self._unknown_bytes

    def feed(self, text: str) -> None:
        """Append a fragment; counting waits for a safe boundary or total()."""
        if not text:
            return
        self._tail += text
        self._fresh = False
        self._unknown_bytes += len(text) if text.isascii() else len(text.encode("utf-8"))
        if len(self._tail) >= self._next_commit:
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
        if self.upper_bound + _utf8_len(text) < cap:
            self.feed(text)
            return text, False
        before = self._tail
        self._tail += text
        self._fresh = False
        if self.total() <= cap:
            # At the cap the last token may still grow with the next fragment
            # ("Hel" + "lo"), so the cut waits for a count above it.
            if len(self._tail) >= self._next_commit:
                self._commit()
            return text, False
        kept = self._cut(cap - self._done, keep=len(before))
        return text[:kept - len(before)], True

    # -- internals -----------------------------------------------------------

    def _commit(self) -> None:
        """Count the tail up to its last safe boundary and close that part."""
        cuts = list(boundaries(self._tail))
        if not cuts:
            self._next_commit = 2 * len(self._tail)
            return
        head, self._tail = self._tail[:cuts[-1]], self._tail[cuts[-1]:]
        self._done += count_cut(head, [0, *cuts[:-1]])
        self._next_commit = COMMIT_CHARS

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
