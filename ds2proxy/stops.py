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
        self._held = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        if not self.stops:
            return text
        if self.matched is not None or not text:
            return ""
        buf = self._held + text
        cut, found = self._first_match(buf)
        # A longer sequence that starts earlier may still complete: wait for it.
        start = len(buf) - self._partial_tail(buf)
        if found is not None and cut <= start:
            return self._cut(buf, cut, found)
        self._held = buf[start:]
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
        return buf[:cut]

    def _first_match(self, buf: str) -> tuple[int, str | None]:
        best, found = len(buf) + 1, None
        for stop in self.stops:
            at = buf.find(stop)
            if at != -1 and at < best:
                best, found = at, stop
        return best, found

    def _partial_tail(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that begins some stop sequence
        (only where a stop's first character occurs need be tried)."""
        window = buf[len(buf) - min(len(buf), self._longest - 1):]
        best = 0
        for stop in self.stops:
            at = window.find(stop[0])
            while at != -1 and len(window) - at > best:
                if stop.startswith(window[at:]):
                    best = len(window) - at
                    break
                at = window.find(stop[0], at + 1)
        return best


class StopPieces:
    """Cuts the answer as the model wrote it into the pieces the shaper
    takes one by one, so that what it counts ends where a match ends.

    One upstream chunk often carries several tokens: taken whole, the text
    after a stop sequence in it was counted though never sent. The cuts
    fall after every place a stop sequence ends (one may begin in the
    chunks before); when such a place does not match at once (a longer
    sequence that starts earlier may still complete), the text after it
    goes a character at a time while the matcher holds text. The caller
    feeds each piece before asking for the next, and stops at a match.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self._keep = max((len(s) for s in stops), default=1) - 1
        self._tail = ""  # the last characters before this chunk

    def pieces(self, text: str, matcher: StopMatcher) -> Iterator[str]:
        window, shift = self._tail + text, len(self._tail)
        self._tail = window[-self._keep:] if self._keep else ""
        at = 0
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
