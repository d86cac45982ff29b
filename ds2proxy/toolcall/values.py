"""The value of one ``parameter`` element (schema first, then by shape).

When the request's schema says a parameter is a string, its text is taken
verbatim: interpreting it first and re-serialising later would rewrite a
JSON file a ``Write`` call is writing. Otherwise the body is read as a JSON
literal, XML child elements, or a loose comma-separated list, in that order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ds2proxy.toolcall.jsonfix import json_value, loads_lenient, loose_list
from ds2proxy.toolcall.xmlfrag import (
    content_value,
    is_clearly_structured,
    is_structure,
    parse_fragment,
)
from ds2proxy.toolcall.xmltext import decode_entities

# Parameters whose values are text by nature: never read as XML or lists.
TEXTISH = frozenset({
    "content", "file_content", "text", "prompt", "query", "command", "cmd", "script",
    "code", "old_string", "new_string", "pattern", "path", "file_path",
})
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a parameter body: plain text, or the content of a CDATA section."""

    text: str
    cdata: bool = False


def parameter_value(name: str, segments: list[Segment], *, raw: bool) -> Any:
    """Decode one parameter body; ``raw`` keeps it as text (string schema)."""
    body = _trimmed(segments)
    if not body:
        return ""
    if all(s.cdata for s in body):
        joined = "".join(s.text for s in body)
        return joined if raw else _cdata_value(name, joined)
    text = "".join(s.text if s.cdata else decode_entities(s.text) for s in body)
    return text if raw else _plain_value(name, text)


def _trimmed(segments: list[Segment]) -> list[Segment]:
    """Drop blank text around the body and trim the outer text pieces."""
    body = [s for s in segments if s.cdata or s.text]
    while body and not body[0].cdata and not body[0].text.strip():
        body.pop(0)
    while body and not body[-1].cdata and not body[-1].text.strip():
        body.pop()
    if body and not body[0].cdata:
        body[0] = Segment(body[0].text.lstrip())
    if body and not body[-1].cdata:
        body[-1] = Segment(body[-1].text.rstrip())
    return body


def _cdata_value(name: str, text: str) -> Any:
    ok, value = json_value(text)
    if ok:
        return unwrap_list(name, value)
    if name.lower() in TEXTISH:
        return text
    markup = decode_entities(_BR.sub("\n", text))
    if "<" in markup:
        nodes = parse_fragment(markup)
        if nodes is not None and is_clearly_structured(nodes):
            return content_value(nodes)
    return _json_like(name, text)


def _plain_value(name: str, text: str) -> Any:
    textish = name.lower() in TEXTISH
    if not textish and "<" in text and ">" in text:
        nodes = parse_fragment(text)
        if nodes is not None and is_structure(nodes):
            return content_value(nodes)
    ok, value = json_value(text)
    if ok:
        return unwrap_list(name, value)
    return text if textish else _json_like(name, text)


def _json_like(name: str, text: str) -> Any:
    """Repaired JSON for a JSON-looking body, a loose list, or the text."""
    if text[:1] in "{[":
        ok, value = loads_lenient(text)
        if ok:
            return unwrap_list(name, value)
    items = loose_list(text)
    return text if items is None else items


def unwrap_list(name: str, value: Any) -> Any:
    """``{"item": [...]}`` or ``{name: [...]}`` → the list itself."""
    if isinstance(value, dict) and len(value) == 1:
        (key, inner), = value.items()
        if key in ("item", name) and isinstance(inner, list):
            return inner
    return value
