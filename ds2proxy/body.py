"""Reading a JSON request body with one copy of its bytes.

``aiohttp``'s ``request.read()`` grows a bytearray, copies it into bytes and
keeps those bytes on the request until it ends: three times the body at the
peak and once for the whole turn. Here the body goes into one buffer,
orjson parses straight from it, and the buffer is dropped as soon as the
parsed object exists.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .errors import PayloadTooLarge
from .jsonbody import parse_object

# Bodies larger than this are parsed off the event loop.
OFF_LOOP_JSON_BYTES = 1 << 20
# Admin JSON bodies (login included, read before authentication) stay small.
ADMIN_BODY_BYTES = 8 << 20


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body exceeds the {limit}-byte limit")


async def read_body(request: web.Request, limit: int) -> bytearray:
    """The raw body, refused with 413 as soon as it is known to exceed ``limit``.

    The buffer grows as bytes arrive (not preallocated from Content-Length,
    so announcing a large body costs the server nothing until it is sent).
    """
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    buf = bytearray()
    while chunk := await request.content.readany():
        if len(buf) + len(chunk) > limit:
            raise too_large(limit)
        buf += chunk
    return buf


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object (depth-bounded), or a 400/413 ProxyError."""
    raw = await read_body(request, limit)
    if len(raw) > OFF_LOOP_JSON_BYTES:
        return await asyncio.to_thread(parse_object, raw)
    return parse_object(raw)
