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

from ..canonical import ChatRequest
from ..upstream.files import hash_attachments

T = TypeVar("T")

# Bodies above this many bytes are parsed off the loop (a thread hop costs
# ~0.1 ms; parsing 64 KB of small messages ~10 ms).
PARSE_OFF_LOOP_BYTES = 64 * 1024


def _parsed(parse: Callable[..., T], args: tuple[Any, ...]) -> T:
    result = parse(*args)
    chat = result if isinstance(result, ChatRequest) else getattr(result, "chat", None)
    if isinstance(chat, ChatRequest):
        hash_attachments(chat)
    return result


def is_large(request: web.Request) -> bool:
    """A body big enough to parse in a worker thread (a chunked one, whose
    size is not announced, counts as big)."""
    length = request.content_length
    return length is None or length > PARSE_OFF_LOOP_BYTES


async def parse_request(request: web.Request, parse: Callable[..., T], *args: Any) -> T:
    """``parse(*args)``: in a worker thread when ``request``'s body is large."""
    if not is_large(request):
        return parse(*args)
    return await asyncio.to_thread(_parsed, parse, args)
