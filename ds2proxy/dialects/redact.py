"""Non-text blocks written into a prompt as JSON, with binary payloads omitted.

Used for blocks a dialect cannot otherwise render (Claude documents,
Gemini executableCode …): the model learns something was there, and raw
base64 never enters the prompt (prompt-compat §5).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_OMITTED = "[omitted_binary_payload]"
_BINARY_KEYS = frozenset({"data", "bytes", "base64", "inline_data", "inlineData"})
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{512,}")
_LONG_TEXT = 1024


def redacted_json(value: Any) -> str:
    """Compact JSON of a block with binary payloads omitted and long text cut."""
    return orjson.dumps(_redact(value)).decode()


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _OMITTED if k in _BINARY_KEYS else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, str) and _BASE64_RUN.fullmatch(value):
        return _OMITTED
    if isinstance(value, str) and len(value) > _LONG_TEXT:
        return value[:_LONG_TEXT] + "...(truncated)"
    return value
