"""Call ids: ``call_`` plus 32 hex digits, distinct for every call."""

from __future__ import annotations

import uuid


def default_call_id() -> str:
    return "call_" + uuid.uuid4().hex
