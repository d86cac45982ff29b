"""A large JSON answer (thousands of embedding vectors) built in a worker
thread, one list item at a time, and sent piece by piece.

orjson holds the GIL for a whole ``dumps``: 2048 vectors of 8192 floats
serialised at once stalled the event loop even from a thread, and freeing
their 16 million floats or handing aiohttp 300 MB in one write did too.
Item by item the loop gets the GIL back between items; each item is freed
in the thread once written; the bytes are exactly ``orjson.dumps(body)``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import orjson
from aiohttp import web

# Numbers in the list above which the answer is built off the loop (~2 ms of
# serialising on the loop below it).
OFF_LOOP_VALUES = 1 << 16
T = TypeVar("T")


def drained(items: list[T]) -> Iterator[T]:
    """Each item of ``items``, its slot emptied as it is handed on, so the
    consumer (a worker thread) frees it once done with it."""
    for n in range(len(items)):
        item, items[n] = items[n], None  # type: ignore[call-overload]
        yield item


def pieces_of(body: dict[str, Any], field: str) -> list[bytes]:
    """``orjson.dumps(body)`` as pieces, ``body[field]`` (any iterable,
    consumed here) serialised one item at a time. Pieces, not one buffer:
    growing and copying hundreds of MB holds the GIL too."""
    keys = list(body)
    at = keys.index(field)
    head = orjson.dumps({k: body[k] for k in keys[:at]})[:-1]  # without its "}"
    pieces = [head + (b"," if at else b"") + orjson.dumps(field) + b":["]
    items: Iterable[Any] = body[field]
    for n, item in enumerate(items):
        pieces.append(b"," + orjson.dumps(item) if n else orjson.dumps(item))
        del item  # freed here, in the thread, when the list's slot is empty
    after = {k: body[k] for k in keys[at + 1:]}
    pieces.append(b"]," + orjson.dumps(after)[1:] if after else b"]}")
    return pieces


def dumps_in_pieces(body: dict[str, Any], field: str) -> bytes:
    """``orjson.dumps(body)``, built by :func:`pieces_of`."""
    return b"".join(pieces_of(body, field))


async def large_json_response(request: web.Request, body: dict[str, Any], field: str,
                              values: int) -> web.StreamResponse:
    """A JSON answer whose ``field`` (a list, or a generator such as
    :func:`drained`'s) holds ``values`` numbers in all: when that is many,
    built in a worker thread and written piece by piece."""
    if values <= OFF_LOOP_VALUES:
        return web.Response(body=b"".join(pieces_of(body, field)),
                            content_type="application/json")
    pieces = await asyncio.to_thread(pieces_of, body, field)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = sum(map(len, pieces))
    await response.prepare(request)
    for n in range(len(pieces)):
        piece, pieces[n] = pieces[n], b""
        await response.write(piece)
    await response.write_eof()
    return response
