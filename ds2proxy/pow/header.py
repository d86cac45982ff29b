"""The ``x-ds-pow-response`` header: base64 of compact, key-sorted JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .challenge import Challenge

_TEXT_KEYS = ("algorithm", "challenge", "salt", "signature", "target_path")


def encode_header(ch: Challenge, answer: int) -> str:
    """The header value proving ``answer`` for ``ch``.

    Keys are sorted so the bytes match what DS2API (Go) sends.
    """
    payload = {key: getattr(ch, key) for key in _TEXT_KEYS}
    payload["answer"] = answer
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return base64.b64encode(text.encode()).decode("ascii")


def decode_header(value: str) -> dict[str, Any]:
    """Parse a header value back into its JSON object; ``ValueError`` on garbage."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError) as exc:
        raise ValueError(f"PoW header is not base64: {exc}") from None
    payload = json.loads(raw)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    if not isinstance(payload, dict):
        raise ValueError("PoW header is not a JSON object")
    for key in _TEXT_KEYS:
        if not isinstance(payload.get(key), str):
            raise ValueError(f"PoW header lacks a string {key!r}")
    answer = payload.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise ValueError("PoW header lacks an integer 'answer'")
    return payload
