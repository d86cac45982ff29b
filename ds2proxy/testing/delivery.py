"""Write one round of SSE events to the client, with the scripted transport faults."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from .scripted_stream import COMMENT
from .scripts import Delivery, HttpFault

log = logging.getLogger("ds2proxy.testing.fake")

_BLOCK = 64 * 1024


async def send_round(request: web.Request, events: list[bytes],
                     delivery: Delivery) -> web.StreamResponse:
    """Stream ``events``; a client that leaves just ends the round early."""
    resp = web.StreamResponse(headers={"Content-Type": delivery.content_type,
                                       "Cache-Control": "no-cache"})
    await resp.prepare(request)
    try:
        await _write(request, resp, events, delivery)
    except ConnectionResetError:
        log.debug("client left %s mid-stream", request.path)
    return resp


async def send_fault(request: web.Request, fault: HttpFault) -> web.StreamResponse:
    """An HTTP error reply; a ``cut`` one promises more body than it sends,
    then resets the connection (a proxy or WAF dying mid-reply)."""
    if not fault.cut:
        return web.Response(status=fault.status, text=fault.body, headers=dict(fault.headers))
    resp = web.StreamResponse(status=fault.status, headers=dict(fault.headers))
    resp.content_type = "text/plain"
    data = fault.body.encode()
    resp.content_length = len(data) + 1024
    await resp.prepare(request)
    await resp.write(data)
    if request.transport is not None:
        request.transport.abort()
    return resp


async def _write(request: web.Request, resp: web.StreamResponse, events: list[bytes],
                 delivery: Delivery) -> None:
    if not delivery.paced:  # large blocks keep long replays fast
        for block in _blocks(events):
            await resp.write(block)
        return
    shown = events if delivery.drop_after is None else events[:delivery.drop_after]
    for index, event in enumerate(shown):
        if delivery.chunk_delay:
            await asyncio.sleep(delivery.chunk_delay)
        await resp.write(event)
        if index == delivery.silence_after and delivery.silence:
            await _silence(resp, delivery)
    if delivery.drop_after is not None and delivery.abort and request.transport is not None:
        request.transport.abort()


async def _silence(resp: web.StreamResponse, delivery: Delivery) -> None:
    """Keep the stream quiet but alive with ``: `` comment lines."""
    loop = asyncio.get_running_loop()
    until = loop.time() + delivery.silence
    while (left := until - loop.time()) > 0:
        await asyncio.sleep(min(delivery.comment_every, left))
        await resp.write(COMMENT)


def _blocks(events: list[bytes]) -> list[bytes]:
    blocks, current, size = [], [], 0
    for event in events:
        current.append(event)
        size += len(event)
        if size >= _BLOCK:
            blocks.append(b"".join(current))
            current, size = [], 0
    if current:
        blocks.append(b"".join(current))
    return blocks
