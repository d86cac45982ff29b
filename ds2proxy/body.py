"""Reading a JSON request body with one copy of its bytes.

``aiohttp``'s ``request.read()`` grows a bytearray, copies it into bytes and
keeps those bytes on the request until it ends: three times the body at the
peak and once for the whole turn. Here the body goes into one buffer,
orjson parses straight from it, and the buffer is dropped as soon as the
parsed object exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from .bad_requests import safe_reason
from .errors import InvalidRequest, PayloadTooLarge
from .jsonbody import parse_object

# Bodies larger than this are parsed off the event loop.
OFF_LOOP_JSON_BYTES = 1 << 20
# And bodies of more objects and arrays than this (about 3 ms of the depth
# walk, which visits each: 10,000 messages in 500 KB took 30 ms on the loop).
OFF_LOOP_JSON_CONTAINERS = 1000
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
    try:
        while chunk := await request.content.readany():
            if len(buf) + len(chunk) > limit:
                raise too_large(limit)
            buf += chunk
    except web.RequestPayloadError as exc:
        raise unreadable(exc) from None
    return buf


def unreadable(exc: BaseException) -> InvalidRequest:
    """A body that cannot be decoded (a broken gzip or chunk, a bad charset or
    multipart framing): the client's fault, named without quoting the body."""
    cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
    if isinstance(cause, HttpProcessingError):
        reason = safe_reason(cause)
    elif isinstance(cause, UnicodeError):
        reason = "text not in its declared charset"
    elif isinstance(cause, LookupError):
        reason = "unknown charset"
    else:
        reason = "malformed form data"
    return InvalidRequest(f"the request body could not be read ({reason})", code="invalid_body")


async def read_form(request: web.Request) -> MultiDictProxy:
    """``request.post()`` with an undecodable body as a 400, not a 500."""
    try:
        return await request.post()
    except (web.RequestPayloadError, ValueError, LookupError) as exc:
        raise unreadable(exc) from None


async def read_json_object(request: web.Request, limit: int,
                           keep: Callable[[bytearray], None] | None = None) -> dict[str, Any]:
    """The body as a JSON object (depth-bounded), or a 400/413 ProxyError;
    ``keep`` sees the raw bytes first (the request log's copy, when on)."""
    raw = await read_body(request, limit)
    if keep is not None:
        keep(raw)
    if _parsed_off_loop(raw):
        return await asyncio.to_thread(parse_object, raw)
    return parse_object(raw)


def _parsed_off_loop(raw: bytearray) -> bool:
    """Large, or many containers (counting brackets is a C scan, ~0.4 ms per MB)."""
    return len(raw) > OFF_LOOP_JSON_BYTES or (
        raw.count(b"{") + raw.count(b"[") > OFF_LOOP_JSON_CONTAINERS)
