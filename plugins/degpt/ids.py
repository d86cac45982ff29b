"""Ids and usage in this surface's shapes: ``chatcmpl-`` + four letters +
six digits for whole answers and Messages (the stream keeps the session's
UUID, as the surface's stream does), and a usage object of just
prompt / completion / total tokens."""

from __future__ import annotations

import hashlib
import string

from ds2proxy.plugin_api import Usage


def completion_id(turn_id: str) -> str:
    """Stable per turn: the same turn always gets the same id."""
    digest = hashlib.sha256(turn_id.encode()).digest()
    letters = "".join(string.ascii_lowercase[b % 26] for b in digest[:4])
    digits = "".join(str(b % 10) for b in digest[4:10])
    return f"chatcmpl-{letters}{digits}"


def usage_shape(usage: Usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}
