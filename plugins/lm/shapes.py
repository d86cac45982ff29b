"""Ids and usage as the LM v2 document shows them: ``gd-`` and ten lowercase
letters or digits, one id for the whole stream; usage with
``prompt_tokens_details`` as a plain integer (the cached prompt tokens:
always 0, the web chat caches nothing for us)."""

from __future__ import annotations

import hashlib
import string

from ds2proxy.plugin_api import Usage

_ALPHABET = string.ascii_lowercase + string.digits


def turn_id(session_id: str) -> str:
    """Stable per turn, so a stream's chunks and a retry of the view agree."""
    digest = hashlib.sha256(session_id.encode()).digest()
    return "gd-" + "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:10])


def usage_shape(usage: Usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "prompt_tokens_details": 0,
            "completion_tokens": usage.completion_tokens, "total_tokens": usage.total_tokens}
