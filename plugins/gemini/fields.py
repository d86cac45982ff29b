"""Field access for Gemini bodies.

Google's REST surface parses protobuf JSON, which accepts every field in
camelCase and in its original snake_case spelling; SDKs send the former,
hand-written clients and curl examples often the latter.
"""

from __future__ import annotations

import re
from typing import Any

_UPPER = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    """``maxOutputTokens`` → ``max_output_tokens``."""
    return _UPPER.sub("_", name).lower()


def pick(obj: Any, name: str) -> Any:
    """``obj[name]`` in camelCase, else in snake_case, else None."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(snake(name)) if value is None else value


def pick_dict(obj: Any, name: str) -> dict:
    """Like :func:`pick`, but an absent or non-object value reads as ``{}``."""
    value = pick(obj, name)
    return value if isinstance(value, dict) else {}
