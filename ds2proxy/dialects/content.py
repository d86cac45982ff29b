"""A client's content value (a string, a list of typed parts, an object) as
plain text: how every dialect reads tool-result content."""

from __future__ import annotations

import json
from typing import Any

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
