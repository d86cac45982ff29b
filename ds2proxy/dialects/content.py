"""A client's content value (a string, a list of typed parts, an object) as
plain text: how every dialect reads tool-result content; and inline base64
data as bytes, the same strict way for every dialect."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ..errors import InvalidRequest

_URL_SAFE = str.maketrans("-_", "+/")
_SLICE = 1 << 18  # characters, a multiple of 4 (~1 ms of decoding each)

_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


def tool_content_text(value: Any) -> str:
    """A client's tool-result content as text, for the dialect parsers.

    A string as-is; a list of parts → the text of its text-like parts joined
    by newlines (other parts dropped); an object → compact JSON; nothing → "".
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(text for text in map(_part_text, value) if text)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and part.get("type") in _TEXT_PART_TYPES:
        text = part.get("text")
        return text if isinstance(text, str) else ""
    return ""


def inline_bytes(payload: str, where: str, *, protobuf: bool = False) -> bytes:
    """Inline base64 data as bytes (line breaks ignored); anything else, or
    nothing, is a 400 naming ``where``. ``protobuf`` also takes the URL-safe
    alphabet and missing padding, as Protocol Buffers' JSON does. A lenient
    decode would turn garbage into a few stray bytes, uploaded upstream as a
    broken file."""
    text = "".join(payload.split())
    if protobuf:
        text = text.translate(_URL_SAFE).rstrip("=")
        text += "=" * (-len(text) % 4)
    if text and _padded_at_end(text):
        try:
            return _decoded(text)
        except (binascii.Error, ValueError):
            pass
    raise InvalidRequest(f"'{where}' is not valid base64 data", param=where)


def _decoded(text: str) -> bytes:
    """``validate=True`` refuses any character outside the alphabet. A large
    payload is decoded a slice at a time: the decoder holds the GIL
    throughout, and a worker thread decoding 8 MB at once stalled the loop."""
    if len(text) <= _SLICE:
        return base64.b64decode(text, validate=True)
    return b"".join(base64.b64decode(text[i:i + _SLICE], validate=True)
                    for i in range(0, len(text), _SLICE))


def _padded_at_end(text: str) -> bool:
    """"=" only as the last one or two characters: a C scan, where a regular
    expression over a multi-MB payload held the loop for tens of ms."""
    first = text.find("=")
    return first == -1 or first >= len(text) - 2 and text.endswith("=" * (len(text) - first))
