"""Where a CDATA section really ends.

Payloads often contain ``]]>`` and closing tags of their own (a heredoc that
writes a document showing a tool block). So a ``]]>`` inside a Markdown fence
opened within the section does not end it, and among the rest the first one
followed by ``</`` wins; only when the text is complete may the first
remaining one be taken instead. A fence that never closes is no example
around a ``]]>``: when every ``]]>`` sits in one (a file or an edit holding
only the opening line of a code block), the first of them followed by ``</``
ends the section at the end of the text, as if there were no fence.
"""

from __future__ import annotations

import re

from ds2proxy.toolcall.fences import FenceTracker

CDATA_OPEN = "<![CDATA["
CDATA_CLOSE = "]]>"
# A literal "]]>" is written as "]]]]><![CDATA[>": two adjacent sections.
JOIN = CDATA_CLOSE + CDATA_OPEN
UNCLOSED = -1
_MARKERS = re.compile(re.escape(JOIN) + "|" + re.escape(CDATA_OPEN) + "|" + re.escape(CDATA_CLOSE))


class CDataEnd:
    """Search for the end of the section whose content starts at ``content_start``;
    resumable, since the text it searches only grows."""

    def __init__(self, content_start: int) -> None:
        self.content_start = content_start
        self._fence = FenceTracker()
        self._fed = content_start
        self._next = content_start
        self._fallback: int | None = None
        self._fenced_end: int | None = None

    @property
    def resume(self) -> int:
        """Where the next search starts (a ``]]>`` there may still be undecided)."""
        return self._next

    def find(self, text: str, *, final: bool) -> int | None:
        """Index of the ending ``]]>``; None while undecided; UNCLOSED at the end."""
        at = text.find(CDATA_CLOSE, self._next)
        while at >= 0:
            self._fence.feed(text, self._fed, at)
            self._fed = at
            after = _after_close(text, at + len(CDATA_CLOSE), final)
            if after is None:
                self._next = at
                return None
            if not self._fence.in_fence:
                if after == "end":
                    return at
                if after == "other" and self._fallback is None:
                    self._fallback = at
            elif after == "end" and self._fenced_end is None:
                self._fenced_end = at
            at = text.find(CDATA_CLOSE, at + 1)
        if final:
            return self._final_end()
        self._next = max(self._fed, len(text) - len(CDATA_CLOSE) + 1)
        return None

    def _final_end(self) -> int:
        """At the end of the text: the first unfenced ``]]>``, else the first
        fenced one followed by ``</``, else UNCLOSED."""
        for candidate in (self._fallback, self._fenced_end):
            if candidate is not None:
                return candidate
        return UNCLOSED


def _after_close(text: str, pos: int, final: bool) -> str | None:
    """What follows a ``]]>``: "join" (the next section starts right away),
    "end" (blanks, then ``</``), "other", or None when not known yet."""
    rest = text[pos:pos + len(CDATA_OPEN)]
    if rest == CDATA_OPEN:
        return "join"
    if not final and len(rest) < len(CDATA_OPEN) and CDATA_OPEN.startswith(rest):
        return None
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    if not final and (pos >= n or (pos == n - 1 and text[pos] == "<")):
        return None
    return "end" if text.startswith("</", pos) else "other"


def section_content(inner: str) -> str | None:
    """The text of a section whose inside is ``inner``: adjacent sections
    joined, nested sections kept as written; None when ``inner`` has a close
    marker without a matching opener (it is not one section).

    A nested section written with an escaped ``]]>`` of its own (an XML
    file's CDATA, rendered as history) balances only when that escape is
    read as the ``]]>`` closing it; one the model wrote as it stands (the
    escape inside it part of the file) balances only when it is kept. The
    first reading that balances is taken."""
    for join_closes in (False, True):
        content = _section_content(inner, join_closes)
        if content is not None:
            return content
    return None


def _section_content(inner: str, join_closes: bool) -> str | None:
    depth = 0
    pieces: list[str] = []
    last = 0
    for marker in _MARKERS.finditer(inner):
        kind = marker.group()
        if kind == JOIN and (depth == 0 or join_closes):
            pieces.append(inner[last:marker.start()])
            last = marker.end()
            depth = max(depth - 1, 0)
        elif kind == CDATA_OPEN:
            depth += 1
        elif kind == CDATA_CLOSE:
            depth -= 1
            if depth < 0:
                return None
    pieces.append(inner[last:])
    return "".join(pieces) if depth == 0 else None


def whole_section(value: str) -> str | None:
    """The content when ``value`` is exactly one CDATA section (see above)."""
    if len(value) < len(JOIN) or not value.startswith(CDATA_OPEN) or not value.endswith(
            CDATA_CLOSE):
        return None
    return section_content(value[len(CDATA_OPEN):-len(CDATA_CLOSE)])
