"""The shared stream writers: Server-Sent Events, and the streamed JSON array
Google serves without ``alt=sse``.

Plugins never format framing themselves. A writer prepares the HTTP response
lazily on the first write, so a turn that fails before producing anything can
still answer with a plain HTTP error. :meth:`StreamWriter.pace` relays an
event iterator and writes keep-alives while the upstream is silent; a write
to a vanished client raises :class:`ClientGone`, which ends the handler (and
with it the turn, whose ``finally`` releases the account lease).

Frames are coalesced, never delayed: a write queues its frame and a flush
task sends everything queued in one socket write as soon as the handler
waits for the upstream, so the frames of all the upstream lines that arrived
together go out together (at most ``MAX_QUEUED_FRAMES`` are held, for at
most ``MAX_HOLD_SECONDS``, before they are sent inline). A client that does not keep up slows the handler down as
before (the flush awaits the socket's drain, and so does the next write).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import orjson
from aiohttp import web

from .errors import ProxyError
from .frames import PayloadRun

T = TypeVar("T")
log = logging.getLogger("ds2proxy.sse")

# Frames held before they are sent inline, without waiting for the loop to
# come round: bounds the delay of the first of a large batch of lines.
MAX_QUEUED_FRAMES = 32
# Nor is a frame held longer than this while the handler works through a
# backlog of upstream lines without waiting (the flush task cannot run then).
MAX_HOLD_SECONDS = 0.0005


class ClientGone(ConnectionError):
    """The client disconnected while we were writing."""


def _json(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode()
    return orjson.dumps(data)


class StreamWriter:
    """The base of every stream writer: frames in, framed bytes out.

    A subclass says how one frame is encoded (:meth:`encode`), what its
    keep-alive is and what closes its framing (:meth:`closing`).
    :func:`ds2proxy.relay.relay` drives a writer through ``pace``,
    ``send_all`` and ``done``.
    """

    content_type = "text/event-stream"

    def __init__(self, request: web.Request, *, keepalive: float = 5.0,
                 headers: dict[str, str] | None = None) -> None:
        # Weak: the request holds the writer (STREAM_KEY), and a cycle between
        # them kept every finished stream's connection, socket included,
        # until the next full garbage collection (a burst's worth of them).
        self._request = weakref.ref(request)
        self.keepalive = keepalive
        self.response = web.StreamResponse(status=200, headers={
            "Content-Type": f"{self.content_type}; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        })
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._ka_task: asyncio.Future | None = None
        self._owner: asyncio.Task | None = None
        self._gone: ClientGone | None = None
        self._waiting = False
        self._since = self._armed_for = 0.0
        self._queued: list[bytes] = []
        self._held_since = 0.0  # when the oldest queued frame was queued
        self._flusher: asyncio.Task | None = None
        self._failure: ClientGone | None = None
        # Set by stop(): the error the relay ends the stream with.
        self.stopped_by: ProxyError | None = None
        request[STREAM_KEY] = self

    @property
    def request(self) -> web.Request:
        """The request this writer answers (alive while its handler runs)."""
        request = self._request()
        if request is None:
            raise ClientGone("the request is gone")
        return request

    @property
    def prepared(self) -> bool:
        return self.response.prepared

    def stop(self, error: ProxyError) -> bool:
        """Have the relay end this stream with ``error`` (in-band once it
        began) by cancelling the task that waits for the turn; False when
        no relay is running."""
        if self._owner is None or self._owner.done():
            return False
        self.stopped_by = error
        self._owner.cancel()
        return True

    async def _write(self, payload: bytes) -> None:
        """Queue a frame; the flush task sends it with whatever else is queued."""
        if self._failure is not None:
            raise self._failure
        if not self.response.prepared:
            try:
                await self.response.prepare(self.request)
            except (ConnectionError, RuntimeError) as exc:
                raise ClientGone(str(exc)) from exc
        now = time.monotonic()
        if not self._queued:
            self._held_since = now
        self._queued.append(payload)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_queued())
        elif (len(self._queued) >= MAX_QUEUED_FRAMES
              or now - self._held_since >= MAX_HOLD_SECONDS):
            await self._send_queued()

    async def _send_queued(self) -> None:
        data = b"".join(self._queued)
        self._queued.clear()
        try:
            await self.response.write(data)
        except (ConnectionError, RuntimeError) as exc:
            # aiohttp raises ConnectionResetError (a ConnectionError) or, on a
            # closing transport, RuntimeError: either way the client is gone.
            self._failure = ClientGone(str(exc))
            raise self._failure from exc

    async def _flush_queued(self) -> None:
        """The flush task: runs once the handler waits, sends all that is queued."""
        try:
            while self._queued and self._failure is None:
                await self._send_queued()
        except ClientGone:
            return  # kept in self._failure: the next write raises it
        finally:
            self._flusher = None

    async def flush(self) -> None:
        """Send everything queued now; ClientGone if the client left."""
        if self._flusher is not None:
            await asyncio.wait({self._flusher})
        if self._queued and self._failure is None:
            await self._send_queued()
        if self._failure is not None:
            raise self._failure

    def encode(self, frame: Any) -> bytes:
        """The bytes of one frame in this writer's framing."""
        raise NotImplementedError

    def closing(self) -> bytes:
        """The bytes that close the framing (none by default)."""
        return b""

    async def send(self, frame: Any) -> None:
        """Write one frame (coalesced with whatever else is queued)."""
        await self._write(self.encode(frame))

    async def send_all(self, frames: Sequence[Any]) -> None:
        """Write several frames as one queued payload."""
        if len(frames) == 1:
            await self._write(self.encode(frames[0]))
        elif frames:
            await self._write(b"".join([self.encode(frame) for frame in frames]))

    async def done(self) -> web.StreamResponse:
        """Close the framing, flush and end the response."""
        tail = self.closing()
        if tail:
            await self._write(tail)
        return await self.finish()

    async def _keepalive(self) -> None:
        raise NotImplementedError

    async def pace(self, events: AsyncIterator[T]) -> AsyncIterator[T]:
        """Yield ``events``; while none arrives for ``keepalive`` s, send a keep-alive.

        ``anext`` is awaited directly and one timer is reused across events
        (re-arming per event would cost more than the event): when it fires
        during an earlier wait it moves to the current wait's deadline, and
        only a wait that lasted ``keepalive`` s gets a task that writes a
        keep-alive (then re-arms). A write failure there means the client
        left: the consuming task is cancelled and :class:`ClientGone` raised.
        """
        iterator = aiter(events)
        loop = asyncio.get_running_loop()
        self._owner = asyncio.current_task()
        try:
            while True:
                self._wait(loop)
                try:
                    item = await anext(iterator)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if self._gone is not None:
                        raise ClientGone(str(self._gone)) from None
                    raise
                finally:
                    self._waiting = False
                if self._ka_task is not None:
                    await asyncio.shield(self._ka_task)
                    if self._gone is not None:
                        raise ClientGone(str(self._gone))
                yield item
        finally:
            self._disarm()
            self._owner = None  # the finished task would hold its response, and so the request
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    def _wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """A silent interval starts now; arm the timer unless one is pending."""
        self._since = loop.time()
        self._waiting = True
        if self._timer is None and self._ka_task is None:
            self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._armed_for = self._since
        self._timer = loop.call_at(self._since + self.keepalive, self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if not self._waiting:
            return  # the next wait arms again
        if self._armed_for != self._since:
            self._arm(asyncio.get_running_loop())  # armed for an earlier wait
            return
        self._ka_task = asyncio.ensure_future(self._send_keepalive())

    async def _send_keepalive(self) -> None:
        try:
            await self._keepalive()
        except ClientGone as exc:
            self._gone = exc
            if self._owner is not None:
                self._owner.cancel()
            return
        finally:
            self._ka_task = None
        if self._waiting:
            self._wait(asyncio.get_running_loop())

    async def finish(self) -> web.StreamResponse:
        """Flush and end the response (prepares it if nothing was written)."""
        if not self.response.prepared:
            await self.response.prepare(self.request)
        if not self.closed:
            self.closed = True
            try:
                await self.flush()
                await self.response.write_eof()
            except (ConnectionError, RuntimeError) as exc:  # ClientGone included
                log.debug("client gone before the end of the stream: %s", exc)
        return self.response


# The request's stream writer, once a handler made one (the route wrapper
# finishes it when a failure comes after the first byte).
STREAM_KEY = web.RequestKey("ds2proxy_stream", StreamWriter)


class SSEWriter(StreamWriter):
    """``event:`` / ``data:`` framing, ``: keep-alive`` comments, terminators.

    ``blank_keepalive`` sends an empty line instead of a comment, for
    clients whose SSE parser chokes on comment lines (google-genai).
    """

    def __init__(self, request: web.Request, *, blank_keepalive: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(request, **kwargs)
        self.blank_keepalive = blank_keepalive

    def encode(self, frame: Any) -> bytes:
        """A payload, or an ``(event name, payload)`` pair for a named event."""
        if type(frame) is bytes and b"\n" not in frame:  # pre-encoded JSON
            return b"data: " + frame + b"\n\n"
        if type(frame) is PayloadRun:  # pre-encoded JSON payloads, framed at once
            return frame.joined(b"\n\ndata: ", b"data: ", b"\n\n")
        if type(frame) is tuple:
            event, frame = frame
            return self._event(frame, event)
        return self._event(frame, None)

    @staticmethod
    def _event(data: Any, event: str | None) -> bytes:
        payload = _json(data)
        head = f"event: {event}\n".encode() if event else b""
        if b"\n" not in payload:  # always so for JSON: skip the split
            return head + b"data: " + payload + b"\n\n"
        # One data line per line of payload (JSON never contains raw newlines).
        return head + b"".join(b"data: " + line + b"\n" for line in payload.split(b"\n")) + b"\n"

    async def send(self, data: Any, *, event: str | None = None) -> None:
        await self._write(self._event(data, event))

    async def send_all(self, frames: Sequence[Any]) -> None:
        """As the base, with runs of pre-encoded payloads (a chat stream's
        text chunks) framed by two joins instead of frame by frame."""
        if len(frames) > 1:
            await self._write(self._frame_all(frames))
        else:
            await super().send_all(frames)

    def _frame_all(self, frames: Sequence[Any]) -> bytes:
        try:
            if b"\n" not in b"".join(frames):
                return b"data: " + b"\n\ndata: ".join(frames) + b"\n\n"
        except TypeError:  # not all bytes: runs of bytes, the rest one by one
            out: list[bytes] = []
            run: list[bytes] = []
            for frame in frames:
                if type(frame) is bytes:
                    run.append(frame)
                    continue
                if run:
                    out.append(self._frame_all(run) if len(run) > 1 else self.encode(run[0]))
                    run = []
                out.append(self.encode(frame))
            if run:
                out.append(self._frame_all(run) if len(run) > 1 else self.encode(run[0]))
            return b"".join(out)
        return b"".join([self.encode(frame) for frame in frames])

    async def comment(self, text: str = "keep-alive") -> None:
        await self._write(f": {text}\n\n".encode())

    async def _keepalive(self) -> None:
        if self.blank_keepalive:
            await self._write(b"\n")
        else:
            await self.comment()
        await self.flush()  # a silent stream finds out at once that the client left


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

    def encode(self, frame: Any) -> bytes:
        if type(frame) is PayloadRun:
            return b"".join([self.encode(payload) for payload in frame.payloads()])
        sep = b",\r\n" if self._items else b""
        self._items += 1
        return self._open() + sep + _json(frame)

    async def _keepalive(self) -> None:
        await self._write(self._open() or b"\n")
        await self.flush()

    def closing(self) -> bytes:
        return self._open() + b"]"
