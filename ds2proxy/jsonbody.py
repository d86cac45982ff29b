"""Request bodies as JSON objects, bounded in nesting depth.

Real requests nest a few levels (a tool's JSON schema perhaps fifteen);
a body nested deeper than :data:`MAX_DEPTH` is refused with a 400 before
any work. That bound keeps every later walker safe: Python recursion, and
orjson's serialiser, which gives up at 255 levels.
"""

from __future__ import annotations

from typing import Any

import orjson

from .errors import InvalidRequest

# Protocol Buffers' default recursion limit: what Google's own APIs accept.
MAX_DEPTH = 100


def parse_object(raw: bytes | bytearray) -> dict[str, Any]:
    """Decode ``raw`` as a JSON object within the depth bound, else a 400."""
    if not raw or raw.isspace():  # no stripped copy of a large body
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    # Fewer brackets than the bound cannot nest past it: skip the walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and deeper_than(body, MAX_DEPTH):
        raise InvalidRequest(f"request body nests deeper than {MAX_DEPTH} levels")
    return body


def deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` deep (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False
