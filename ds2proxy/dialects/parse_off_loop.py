"""A dialect's request parser, run in a worker thread for a large body.

Parsing walks every message and decodes every inline base64 payload; a
multi-MB image or thousands of messages held every other stream for
50–270 ms. The thread also works out each payload's sha256 once, so the
turn (which keys its uploads by it) never hashes megabytes on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from ..body import PARSE_OFF_LOOP_BYTES, is_large
from ..canonical import ChatRequest
from ..upstream.files import hash_attachments

T = TypeVar("T")

__all__ = ["PARSE_OFF_LOOP_BYTES", "is_large", "parse_request"]


def _parsed(parse: Callable[..., T], args: tuple[Any, ...]) -> T:
    result = parse(*args)
    chat = result if isinstance(result, ChatRequest) else getattr(result, "chat", None)
    if isinstance(chat, ChatRequest):
        hash_attachments(chat)
    return result


async def parse_request(request: web.Request, parse: Callable[..., T], *args: Any) -> T:
    """``parse(*args)``: in a worker thread when ``request``'s body is large."""
    if not is_large(request):
        return parse(*args)
    return await asyncio.to_thread(_parsed, parse, args)
