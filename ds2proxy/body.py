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
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDict, MultiDictProxy

from .bad_requests import safe_reason
from .errors import InvalidRequest, PayloadTooLarge
from .jsonbody import parse_object

try:  # what request.post() splits a form with (recent yarl): 10x faster than parse_qsl
    from yarl import query_to_pairs
except ImportError:  # pragma: no cover - an older yarl
    def query_to_pairs(query_string: str, *, max_fields: int | None = None,
                       encoding: str = "utf-8") -> list[tuple[str, str]]:
        return parse_qsl(query_string, keep_blank_values=True, encoding=encoding,
                         max_num_fields=max_fields)

# Bodies larger than this are parsed off the event loop.
OFF_LOOP_JSON_BYTES = 1 << 20
# And bodies of more objects and arrays than this (about 3 ms of the depth
# walk, which visits each: 10,000 messages in 500 KB took 30 ms on the loop).
OFF_LOOP_JSON_CONTAINERS = 1000
# Admin JSON bodies (login included, read before authentication) stay small.
ADMIN_BODY_BYTES = 8 << 20
# Request bodies above this many bytes are parsed (as a dialect's request,
# an admin JSON body or a dashboard form) in a worker thread: a thread hop
# costs ~0.1 ms, parsing 64 KB of small messages or form fields ~10 ms.
PARSE_OFF_LOOP_BYTES = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
# The most fields a form may have: what ``request.post()`` allows by default.
MAX_FORM_FIELDS = 1000


def is_large(request: web.Request) -> bool:
    """A body big enough to parse in a worker thread (a chunked one, whose
    size is not announced, counts as big)."""
    length = request.content_length
    return length is None or length > PARSE_OFF_LOOP_BYTES


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


async def read_form(request: web.Request, limit: int) -> MultiDictProxy:
    """``request.post()`` with an undecodable body as a 400, not a 500, and a
    large URL-encoded one split into fields in a worker thread (megabytes of
    it held every other request for tens of ms). A multipart body is read
    part by part as it arrives, which gives the loop back between chunks."""
    try:
        if request.content_type != FORM_TYPE or not is_large(request):
            return await request.clone(client_max_size=limit).post()
        raw = await read_body(request, limit)
        return await asyncio.to_thread(parse_form, raw, request.charset or "utf-8")
    except (web.RequestPayloadError, HttpProcessingError, ValueError, LookupError) as exc:
        raise unreadable(exc) from None
    except web.HTTPRequestEntityTooLarge as exc:
        if "fields" in (exc.text or ""):
            raise too_many_fields() from None
        raise too_large(limit) from None


def too_many_fields() -> PayloadTooLarge:
    return PayloadTooLarge(f"the form has more than {MAX_FORM_FIELDS} fields")


def parse_form(raw: bytearray, charset: str) -> MultiDictProxy:
    """A URL-encoded body's fields, split as ``request.post()`` splits them."""
    text = raw.rstrip().decode(charset)
    if text.count("&") >= MAX_FORM_FIELDS:
        raise too_many_fields()
    return MultiDictProxy(MultiDict(query_to_pairs(text, encoding=charset)))


async def read_json_object(request: web.Request, limit: int,
                           keep: Callable[[bytearray], None] | None = None, *,
                           check: Callable[[dict[str, Any]], None] | None = None,
                           off_loop_bytes: int = OFF_LOOP_JSON_BYTES) -> dict[str, Any]:
    """The body as a JSON object (depth-bounded), or a 400/413 ProxyError;
    ``keep`` sees the raw bytes first (the request log's copy, when on);
    ``check`` vets the object where it was parsed (a thread for a big body),
    as a walk over every value of a big body would hold the loop too."""
    raw = await read_body(request, limit)
    if keep is not None:
        keep(raw)
    if _parsed_off_loop(raw, off_loop_bytes):
        return await asyncio.to_thread(_parse_checked, raw, check)
    return _parse_checked(raw, check)


def _parse_checked(raw: bytearray, check: Callable[[dict[str, Any]], None] | None
                   ) -> dict[str, Any]:
    body = parse_object(raw)
    if check is not None:
        check(body)
    return body


def _parsed_off_loop(raw: bytearray, size: int) -> bool:
    """Large, or many containers (counting brackets is a C scan, ~0.4 ms per MB)."""
    return len(raw) > size or (
        raw.count(b"{") + raw.count(b"[") > OFF_LOOP_JSON_CONTAINERS)
