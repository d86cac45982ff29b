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
        self._head = ""         # the tail's text as last joined
        self._parts: list[str] = []  # fragments fed since, not joined yet
        self._size = 0          # characters of the tail (head and parts)
        self._scanned = 0       # the tail holds no safe boundary before this
        self._exact = 0         # tokens of everything fed, when _fresh
        self._fresh = True
        self._unknown_bytes = 0  # bytes fed since _exact was computed
        self._next_commit = COMMIT_CHARS

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
        if self.upper_bound + _utf8_len(text) < cap:
            self.feed(text)
            return text, False
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
            self._scanned = max(0, len(tail) - 2)
            self._next_commit = 2 * len(tail)
            return
        head = tail[:cuts[-1]]
        self._tail = tail[cuts[-1]:]
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
