"""Rewriting ``[reference:N]`` markers in streamed answer text.

``search.citation_style``: ``raw`` keeps markers byte for byte, ``markdown``
turns them into ``[N+1](url)`` links, ``strip`` removes them. Markers may be
split across chunks, so a tail that could still become one is held back.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# N is ASCII digits, at most 9 of them: a longer run (or other scripts'
# digits) is no citation, and stays text; int() refuses over 4300 digits.
MARKER = re.compile(r"\[(?:reference|citation):\s*([0-9]{1,9})\]", re.IGNORECASE)
_PREFIX = re.compile(r"\[(?:r(?:e(?:f(?:e(?:r(?:e(?:n(?:c(?:e(?::\s*[0-9]{0,9})?)?)?)?)?)?)?)?)?"
                     r"|c(?:i(?:t(?:a(?:t(?:i(?:o(?:n(?::\s*[0-9]{0,9})?)?)?)?)?)?)?)?)?$",
                     re.IGNORECASE)

UrlLookup = Callable[[int], str | None]


class CitationRewriter:
    def __init__(self, style: str, lookup: UrlLookup) -> None:
        self.style = style
        self.lookup = lookup
        self.held = ""  # a possible marker start, waiting for more text

    def feed(self, text: str) -> str:
        if self.style == "raw" or ("[" not in text and not self.held):
            return text  # no marker can start or end here
        text = self.held + text
        self.held = ""
        window = max(0, len(text) - 24)
        tail = _PREFIX.search(text, window)
        if tail is not None:
            text, self.held = text[:tail.start()], text[tail.start():]
        return MARKER.sub(self._replace, text)

    def flush(self) -> str:
        held, self.held = self.held, ""
        return MARKER.sub(self._replace, held)

    def _replace(self, match: re.Match[str]) -> str:
        if self.style == "strip":
            return ""
        n = int(match.group(1))
        url = self.lookup(n)
        return f"[{n + 1}]({url})" if url else ""
