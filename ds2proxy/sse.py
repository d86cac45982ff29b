"""The shared stream writers: Server-Sent Events, and the streamed JSON array
Google serves without ``alt=sse``.

Plugins never format framing themselves. A writer prepares the HTTP response
lazily on the first write, so a turn that fails before producing anything can
still answer with a plain HTTP error. :meth:`StreamWriter.pace` relays an
event iterator and writes keep-alives while the upstream is silent; a write
to a vanished client raises :class:`ClientGone`, which ends the handler (and
with it the turn, whose ``finally`` releases the account lease).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
from aiohttp import web

T = TypeVar("T")
log = logging.getLogger("ds2proxy.sse")

STREAM_KEY = web.RequestKey("ds2proxy_stream", object)


class ClientGone(ConnectionError):
    """The client disconnected while we were writing."""


def _json(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    return orjson.dumps(data)


class StreamWriter:
    content_type = "text/event-stream"

    def __init__(self, request: web.Request, *, keepalive: float = 5.0,
                 headers: dict[str, str] | None = None) -> None:
        self.request = request
        self.keepalive = keepalive
        self.response = web.StreamResponse(status=200, headers={
            "Content-Type": f"{self.content_type}; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        })
        self.closed = False
        request[STREAM_KEY] = self

    @property
    def prepared(self) -> bool:
        return self.response.prepared

    async def _write(self, payload: bytes) -> None:
        try:
            if not self.response.prepared:
                await self.response.prepare(self.request)
            await self.response.write(payload)
        except (ConnectionError, RuntimeError) as exc:
            # aiohttp raises ConnectionResetError (a ConnectionError) or, on a
            # closing transport, RuntimeError: either way the client is gone.
            raise ClientGone(str(exc)) from exc

    async def _keepalive(self) -> None:
        raise NotImplementedError

    async def pace(self, events: AsyncIterator[T]) -> AsyncIterator[T]:
        """Yield ``events``; while none arrives for ``keepalive`` s, send a keep-alive."""
        iterator = aiter(events)
        pending: asyncio.Task | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(iterator))
                done, _ = await asyncio.wait({pending}, timeout=self.keepalive)
                if not done:
                    await self._keepalive()
                    continue
                task, pending = pending, None
                try:
                    item = task.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            if pending is not None:
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def finish(self) -> web.StreamResponse:
        """Flush and end the response (prepares it if nothing was written)."""
        if not self.response.prepared:
            await self.response.prepare(self.request)
        if not self.closed:
            self.closed = True
            try:
                await self.response.write_eof()
            except (ConnectionError, RuntimeError) as exc:
                log.debug("client gone before the end of the stream: %s", exc)
        return self.response


class SSEWriter(StreamWriter):
    """``event:`` / ``data:`` framing, ``: keep-alive`` comments, terminators."""

    async def send(self, data: Any, *, event: str | None = None) -> None:
        payload = _json(data)
        head = f"event: {event}\n".encode() if event else b""
        # One data line per line of payload (JSON never contains raw newlines).
        body = b"".join(b"data: " + line + b"\n" for line in payload.split(b"\n"))
        await self._write(head + body + b"\n")

    async def comment(self, text: str = "keep-alive") -> None:
        await self._write(f": {text}\n\n".encode())

    async def _keepalive(self) -> None:
        await self.comment()

    async def done(self) -> web.StreamResponse:
        """The OpenAI-style terminator ``data: [DONE]``, then end."""
        await self.send("[DONE]")
        return await self.finish()


class JSONArrayWriter(StreamWriter):
    """A JSON array streamed element by element (Gemini without ``alt=sse``).

    Keep-alives are whitespace between elements, which JSON allows.
    """

    content_type = "application/json"

    def __init__(self, request: web.Request, **kwargs: Any) -> None:
        super().__init__(request, **kwargs)
        self._opened = False
        self._items = 0

    def _open(self) -> bytes:
        if self._opened:
            return b""
        self._opened = True
        return b"["

    async def send(self, data: Any) -> None:
        sep = b",\r\n" if self._items else b""
        self._items += 1
        await self._write(self._open() + sep + _json(data))

    async def _keepalive(self) -> None:
        await self._write(self._open() or b"\n")

    async def done(self) -> web.StreamResponse:
        await self._write(self._open() + b"]")
        return await self.finish()
