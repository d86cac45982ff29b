"""Recognising the model's tool tags in all the spellings it actually writes.

The model writes DSML tags imperfectly (``<｜DSML|tool_calls>``,
``<<DSML|DSML|invoke``, ``<dsml-tool-calls>``, a trailing ``|`` instead of
``>`` ...), so a tag is found by a small scanner rather than a list of
spellings. Matching is ASCII-only case-insensitive and never changes offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from ds2proxy.toolcall.xmltext import decode_entities

WRAPPER = "tool_calls"
INVOKE = "invoke"
PARAMETER = "parameter"

_NAMES = (WRAPPER, INVOKE, PARAMETER)
_BARS = "|｜"
_NOISE_CHARS = "|｜ \t\r\n"
_SPACE = " \t\r\n"
_MAX_ATTRIBUTES = 1024
# The model's stray ``<`` and prefix noise are a few characters; a longer run
# is no tag, so a run of thousands is never held and rescanned chunk by chunk.
MAX_LT_RUN = 16
_MAX_NOISE = 64
_TOO_LONG = -2
_ATTRIBUTE = re.compile(
    r"""([^\s=/>"']+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.ASCII
)


class Scan(Enum):
    """Outcome of looking at a ``<``: more text is needed, or it is no tag."""

    PARTIAL = "partial"
    NO = "no"


@dataclass(frozen=True, slots=True)
class Head:
    """The part of a tag up to its name and trailing pipes."""

    start: int
    end: int
    name: str
    closing: bool
    pipes: bool


@dataclass(frozen=True, slots=True)
class Tag:
    """A complete tool tag: ``text[start:end]``."""

    start: int
    end: int
    name: str
    closing: bool
    attrs: dict[str, str] = field(default_factory=dict)
    self_closing: bool = False

    def opens(self, name: str) -> bool:
        return self.name == name and not self.closing

    def closes(self, name: str) -> bool:
        return self.name == name and self.closing


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, so offsets never move."""
    return text.translate(_LOWER)


_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


def scan_head(text: str, pos: int, *, final: bool) -> Head | Scan:
    """Read a tag head at ``text[pos] == "<"``; PARTIAL when the text ends
    before it is decided (never when ``final``)."""
    n = len(text)
    i = pos
    while i < n and text[i] == "<":
        i += 1
        if i - pos > MAX_LT_RUN:
            return Scan.NO
    closing = i < n and text[i] == "/"
    i += closing
    i, noisy = _skip_noise(text, i)
    if i == _TOO_LONG:
        return Scan.NO
    if i < 0:
        return Scan.NO if final else Scan.PARTIAL
    name, i = _match_name(text, i, noisy)
    if name is None:
        return Scan.NO
    if i < 0:
        return Scan.NO if final else Scan.PARTIAL
    j = i
    while j < n and text[j] in _BARS:
        j += 1
    if j == n:
        if not final:
            return Scan.PARTIAL
    elif not (text[j] in _SPACE or text[j] in ">/" or (text[j] == "<" and j > i)):
        return Scan.NO
    return Head(pos, j, name, closing, j > i)


def _skip_noise(text: str, i: int) -> tuple[int, bool]:
    """Skip prefix noise; (-1, _) when the text ends inside it, (_TOO_LONG, _)
    when it runs on too long to be a tag's."""
    n = len(text)
    start = i
    while i < n:
        if i - start > _MAX_NOISE:
            return _TOO_LONG, True
        if text[i] in _NOISE_CHARS:
            i += 1
            continue
        chunk = ascii_lower(text[i:i + 4])
        if chunk == "dsml":
            i += 4
            if i < n and text[i] in "-_":
                i += 1
            continue
        if len(chunk) < 4 and "dsml".startswith(chunk):
            return -1, True
        break
    if i >= n:
        return -1, i > start
    return i, i > start


def _match_name(text: str, i: int, noisy: bool) -> tuple[str | None, int]:
    """The tag name at ``i``: (name, end), (name, -1) when cut off, (None, _)."""
    rest = ascii_lower(text[i:i + len(WRAPPER)])
    candidates = [*_NAMES, "tool-calls"] if noisy else list(_NAMES)
    for candidate in candidates:
        if rest.startswith(candidate):
            return (WRAPPER if candidate == "tool-calls" else candidate), i + len(candidate)
    if i + len(rest) == len(text) and any(c.startswith(rest) for c in candidates):
        return "", -1
    return None, 0


def complete_tag(text: str, head: Head, *, final: bool) -> Tag | Scan:
    """Read the attributes up to ``>``: a Tag, PARTIAL (text ended) or NO."""
    n = len(text)
    j = head.end
    quote = ""
    while j < n:
        ch = text[j]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ">":
            return _build(text, head, j, j + 1)
        elif ch == "<":
            return _build(text, head, head.end, head.end) if head.pipes else Scan.NO
        j += 1
        if j - head.end > _MAX_ATTRIBUTES:
            return Scan.NO
    if final:
        return _build(text, head, head.end, head.end) if head.pipes else Scan.NO
    return Scan.PARTIAL


def _build(text: str, head: Head, attr_end: int, end: int) -> Tag:
    raw = text[head.end:attr_end].strip()
    self_closing = raw.endswith("/")
    attrs = {
        ascii_lower(m.group(1)): decode_entities(m.group(2) or m.group(3) or m.group(4) or "")
        for m in _ATTRIBUTE.finditer(raw.rstrip("/"))
    }
    return Tag(head.start, end, head.name, head.closing, attrs, self_closing)


def read_tag(text: str, pos: int, *, final: bool) -> Tag | Scan:
    """A whole tool tag at ``pos``, or why not."""
    head = scan_head(text, pos, final=final)
    if not isinstance(head, Head):
        return head
    return complete_tag(text, head, final=final)
