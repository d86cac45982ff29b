"""Reading JSON the model wrote by hand, with the few repairs it needs.

Models write Windows paths with single backslashes, leave object keys
unquoted and list objects without brackets. The repairs run only after a
plain parse failed, in a fixed order, so valid JSON is never rewritten.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from ds2proxy.jsonbody import MAX_DEPTH, deeper_than

_BAD_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])?')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_$][\w$\-]*)(\s*:)")
_KEY_THEN_OBJECT = re.compile(r'"\s*:\s*\{')
_NEXT_OBJECT = re.compile(r"\s*,\s*\{")
_CONTROL_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
_PATH_KEY = re.compile(r"path|file", re.IGNORECASE | re.ASCII)
_TEXT_KEY = re.compile(r"content|text", re.IGNORECASE | re.ASCII)


def json_value(text: str) -> tuple[bool, Any]:
    """Strict parse of one JSON document (NaN and Infinity refused, and a
    number too large for a float, which would be written back as Infinity:
    not JSON, so a client's parse of the arguments fails). A value
    nested deeper than a request body may be is no value: every walker after
    this one (schema, emptiness, serialisation) may then recurse safely."""
    try:
        value = json.loads(text, parse_constant=_refuse, parse_float=_finite)
    except (ValueError, RecursionError):
        return False, None
    if text.count("[") + text.count("{") > MAX_DEPTH and isinstance(value, dict | list) \
            and deeper_than(value, MAX_DEPTH):
        return False, None
    return True, value


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def loads_lenient(text: str) -> tuple[bool, Any]:
    """Parse, applying the repairs one after another until one parses."""
    ok, value = json_value(text)
    for repair in _REPAIRS:
        if ok:
            break
        text = repair(text)
        ok, value = json_value(text)
    return ok, (restore_path_escapes(value) if ok else None)


def restore_path_escapes(value: Any, key: str = "") -> Any:
    """Turn control characters back into ``\\t``/``\\n`` text in path-like values,
    where they came from a Windows path such as ``C:\\new\\table``."""
    if isinstance(value, dict):
        return {k: restore_path_escapes(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [restore_path_escapes(v, key) for v in value]
    if isinstance(value, str) and _PATH_KEY.search(key) and not _TEXT_KEY.search(key):
        return "".join(_CONTROL_ESCAPES.get(ch, ch) for ch in value)
    return value


def _double_bad_escapes(text: str) -> str:
    return _BAD_ESCAPE.sub(lambda m: m.group(0) if m.group(1) else "\\\\", text)


def _outside_strings(text: str, change: Callable[[str], str]) -> str:
    """Apply ``change`` to the parts of ``text`` that are not string literals."""
    parts: list[str] = []
    last = 0
    for match in _STRING.finditer(text):
        parts.append(change(text[last:match.start()]))
        parts.append(match.group(0))
        last = match.end()
    parts.append(change(text[last:]))
    return "".join(parts)


def _quote_bare_keys(text: str) -> str:
    return _outside_strings(text, lambda part: _BARE_KEY.sub(r'\1"\2"\3', part))


def _bracket_object_runs(text: str) -> str:
    """``"k": {…}, {…}`` → ``"k": [{…}, {…}]``. The brackets are matched in
    one pass: matching each key's object on its own made a deeply nested
    body cost quadratic time."""
    closing = _bracket_ends(text)
    out: list[str] = []
    last = 0
    for match in _KEY_THEN_OBJECT.finditer(text):
        start = match.end() - 1
        if start < last or start not in closing:  # not in closing: inside a string
            continue
        ends = _object_run(text, start, closing)
        if len(ends) < 2:
            continue
        out += [text[last:start], "[", text[start:ends[-1]], "]"]
        last = ends[-1]
    out.append(text[last:])
    return "".join(out)


def _bracket_ends(text: str) -> dict[int, int]:
    """Offset of every ``{``/``[`` outside strings → end (exclusive) of its match."""
    ends: dict[int, int] = {}
    opened: list[int] = []
    for i, ch, _ in _outside_string_chars(text):
        if ch in "{[":
            opened.append(i)
        elif ch in "}]" and opened:
            ends[opened.pop()] = i + 1
    return ends


def _object_run(text: str, start: int, closing: dict[int, int]) -> list[int]:
    """End offsets of the comma-separated objects starting at ``start``."""
    ends: list[int] = []
    pos = start
    while (end := closing.get(pos)) is not None:
        ends.append(end)
        nxt = _NEXT_OBJECT.match(text, end)
        if nxt is None:
            break
        pos = nxt.end() - 1
    return ends


def _outside_string_chars(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, char, depth after it) for every character outside string literals."""
    depth = 0
    in_string = False
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        else:
            depth += (ch in "{[") - (ch in "}]")
            yield i, ch, depth
        i += 1


class BracketWalk:
    """The end of the bracket opened at ``start``, string-aware, for a text
    that grows at its end: each call reads only what was added since the last one."""

    __slots__ = ("pos", "depth", "in_string", "escaped", "found")

    def __init__(self, start: int) -> None:
        self.pos, self.depth = start, 0
        self.in_string = self.escaped = False
        self.found: int | None = None

    def shifted(self, by: int) -> BracketWalk:
        """The same walk on the text with its first ``by`` characters gone."""
        walk = BracketWalk(self.pos - by)
        walk.depth, walk.in_string, walk.escaped = self.depth, self.in_string, self.escaped
        walk.found = None if self.found is None else self.found - by
        return walk

    def end(self, text: str) -> int | None:
        """End (exclusive) of the bracket opened at the start; None so far."""
        i, n = self.pos, len(text)
        while self.found is None and i < n:
            ch = text[i]
            if self.escaped:
                self.escaped = False
            elif self.in_string:
                self.escaped = ch == "\\"
                self.in_string = ch != '"'
            elif ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.found = i + 1
            i += 1
        self.pos = i
        return self.found


def split_top_level(text: str) -> list[str]:
    """Split at commas outside strings, objects and arrays."""
    parts: list[str] = []
    last = 0
    for i, ch, depth in _outside_string_chars(text):
        if ch == "," and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    parts.append(text[last:])
    return parts


def loose_list(text: str) -> list[Any] | None:
    """``{"a":1}, {"b":2}`` → a list; None unless every item is JSON."""
    parts = [part.strip() for part in split_top_level(text)]
    if len(parts) < 2 or not all(parts):
        return None
    values = []
    for part in parts:
        ok, value = loads_lenient(part)
        if not ok:
            return None
        values.append(value)
    return values


_REPAIRS: tuple[Callable[[str], str], ...] = (
    _double_bad_escapes,
    _quote_bare_keys,
    _bracket_object_runs,
)
