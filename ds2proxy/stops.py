"""Stop sequences, enforced by the proxy because the web chat ignores them.

Every family normalises its stop field (OpenAI ``stop``, Anthropic
``stop_sequences``, Gemini ``stopSequences``, Ollama ``options.stop``) into
``ChatRequest.sampling["stop"]`` through :func:`parse_stops`; the turn
shaper runs the visible answer text through one :class:`StopMatcher`.
The matcher holds back only the tail that could still become a match, so a
stream stays live, and the text it lets through is exactly the text before
the first occurrence of any stop sequence.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import InvalidRequest

MAX_STOP_LENGTH = 1000
# Stop sequences at least this long follow their partial match incrementally
# (:class:`_Overlap`): the tail check tries each place a stop's first
# character occurs, which for a long self-similar stop ("aaaa…b" against a
# run of "a") costs its length squared on every fragment.
LONG_STOP = 64
OVERLAP_PIECE = 16  # characters a long stop's overlap advances by at a time


def parse_stops(value: Any, *, param: str, max_count: int | None,
                allow_string: bool = True) -> list[str]:
    """A family's stop field as a list of non-empty strings, or a 400 naming it."""
    if value is None:
        return []
    if isinstance(value, str) and allow_string:
        value = [value]
    if not isinstance(value, list):
        kinds = "a string or a list of strings" if allow_string else "a list of strings"
        raise InvalidRequest(f"'{param}' must be {kinds}", param=param)
    if max_count is not None and len(value) > max_count:
        raise InvalidRequest(f"'{param}' takes at most {max_count} sequences, got {len(value)}",
                             param=param)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRequest(f"'{param}[{i}]' must be a string", param=param)
        if not item:
            raise InvalidRequest(f"'{param}[{i}]' must not be empty", param=param)
        if len(item) > MAX_STOP_LENGTH:
            raise InvalidRequest(f"'{param}[{i}]' is longer than {MAX_STOP_LENGTH} characters",
                                 param=param)
    return list(dict.fromkeys(value))


def stops_of(sampling: dict[str, Any]) -> tuple[str, ...]:
    """The stop sequences a canonical request carries (string or list form)."""
    value = sampling.get("stop")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(s for s in value if isinstance(s, str) and s)


class StopMatcher:
    """Cuts a text stream right before the first stop sequence.

    :meth:`feed` returns the text that can safely go out now; :attr:`matched`
    names the sequence once one is found (everything after it is dropped);
    :meth:`flush` releases the held tail when the text ends without a match.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self._longest = max((len(s) for s in stops), default=0)
        self._short = tuple(s for s in stops if len(s) < LONG_STOP)
        self._long = [_Overlap(s) for s in stops if len(s) >= LONG_STOP]
        self._held = ""
        # The held text holds a whole match, kept while a longer sequence
        # that starts earlier may still complete: the next text decides.
        self.deciding = False
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        if not self.stops:
            return text
        if self.matched is not None or not text:
            return ""
        buf = self._held + text
        cut, found = self._first_match(buf)
        # A longer sequence that starts earlier may still complete: wait for it.
        tail = self._partial_tail(buf)
        for overlap in self._long:
            tail = max(tail, overlap.feed(text, self._longest))
        start = len(buf) - tail
        if found is not None and cut <= start:
            return self._cut(buf, cut, found)
        self._held = buf[start:]
        self.deciding = found is not None
        return buf[:start]

    @property
    def held(self) -> bool:
        """Whether text is held back (it may still become part of a match)."""
        return bool(self._held)

    def flush(self) -> str:
        """The held text once no more follows (a complete match in it still cuts)."""
        held, self._held = self._held, ""
        if self.matched is not None:
            return ""
        cut, found = self._first_match(held)
        return held if found is None else self._cut(held, cut, found)

    def _cut(self, buf: str, cut: int, found: str) -> str:
        self.matched = found
        self._held = ""
        self.deciding = False
        return buf[:cut]

    def _first_match(self, buf: str) -> tuple[int, str | None]:
        best, found = len(buf) + 1, None
        for stop in self.stops:
            at = buf.find(stop)
            if at != -1 and at < best:
                best, found = at, stop
        return best, found

    def _partial_tail(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that begins some short stop
        sequence (only where a stop's first character occurs need be tried)."""
        window = buf[len(buf) - min(len(buf), self._longest - 1):]
        best = 0
        for stop in self._short:
            at = window.find(stop[0], max(0, len(window) - len(stop)))
            while at != -1 and len(window) - at > best:
                if stop.startswith(window[at:]):
                    best = len(window) - at
                    break
                at = window.find(stop[0], at + 1)
        return best


class _Overlap:
    """How much of one long stop sequence the text so far ends with.

    The Knuth-Morris-Pratt state, advanced a piece of text at a time with
    string comparisons: the new overlap is an earlier one (the current, or
    one of its borders) extended by the piece, or begins inside the piece.
    The overlap grows by at most a piece's length, and each border tried
    shrinks it, so the work is linear in the text whatever the stop."""

    __slots__ = ("stop", "_fail", "_state")

    def __init__(self, stop: str) -> None:
        self.stop = stop
        self._fail = _failure(stop)
        self._state = 0  # the longest proper prefix of ``stop`` the text ends with

    def feed(self, text: str, longest: int) -> int:
        """Advance over ``text``; the length of the longest suffix of the
        text so far that begins ``stop``: the whole stop when the text ends
        with it and it is not the longest one, as the tail check counts it."""
        size, state, whole = len(self.stop), self._state, False
        for at in range(0, len(text), OVERLAP_PIECE):
            reached = self._advance(state, text[at:at + OVERLAP_PIECE])
            whole = reached == size  # the whole stop: go on from its longest border
            state = self._fail[size - 1] if whole else reached
        self._state = state
        return size if whole and size < longest else state

    def _advance(self, overlap: int, piece: str) -> int:
        stop, fail, size, n = self.stop, self._fail, len(self.stop), len(piece)
        while True:
            if overlap + n <= size and stop.startswith(piece, overlap):
                return overlap + n
            if overlap == 0:
                break
            overlap = fail[overlap - 1]
        at = piece.find(stop[0], max(1, n - size))
        while at != -1:
            if stop.startswith(piece[at:]):
                return n - at
            at = piece.find(stop[0], at + 1)
        return 0


def _failure(stop: str) -> list[int]:
    """For each prefix of ``stop``, the length of its longest proper border."""
    fail = [0] * len(stop)
    k = 0
    for i in range(1, len(stop)):
        while k and stop[i] != stop[k]:
            k = fail[k - 1]
        if stop[i] == stop[k]:
            k += 1
        fail[i] = k
    return fail


class StopPieces:
    """Cuts the answer as the model wrote it into the pieces the shaper
    takes one by one, so that what it counts ends where a match ends.

    One upstream chunk often carries several tokens: taken whole, the text
    after a stop sequence in it was counted though never sent. The cuts
    fall after every place a stop sequence ends (one may begin in the
    chunks before); when such a place does not match at once (a longer
    sequence that starts earlier may still complete), the text after it
    goes a character at a time while the matcher holds text, and so does
    the start of the next chunk while the matcher is still deciding. The
    caller feeds each piece before asking for the next, and stops at a match.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self._keep = max((len(s) for s in stops), default=1) - 1
        self._tail = ""  # the last characters before this chunk

    def pieces(self, text: str, matcher: StopMatcher) -> Iterator[str]:
        window, shift = self._tail + text, len(self._tail)
        self._tail = window[-self._keep:] if self._keep else ""
        at = 0
        while at < len(text) and matcher.deciding:  # a match held over from before
            yield text[at]
            at += 1
        for end in self._ends(window, shift, len(text)):
            if end <= at:
                continue
            yield text[at:end]
            at = end
            last = min(len(text), end + self._keep)
            while at < last and matcher.held:
                yield text[at]
                at += 1
        if at < len(text):
            yield text[at:]

    def _ends(self, window: str, shift: int, size: int) -> list[int]:
        """Where a stop sequence ends inside this chunk (not at its edges)."""
        ends = set()
        for stop in self.stops:
            found = window.find(stop)
            while found != -1:
                end = found + len(stop) - shift
                if 0 < end < size:
                    ends.add(end)
                found = window.find(stop, found + 1)
        return sorted(ends)
