"""The one relay from a turn to a streaming client.

Every streaming route of every dialect goes through :func:`relay`: it reads
the turn's canonical events under the writer's keep-alive pacing (a batch
per upstream read: what had already arrived, never held back), asks the
dialect's :class:`Renderer` for the frames of each event and queues the
frames of a batch as one write, and ends the stream with the
renderer's end frames and the writer's terminator.

A failure takes one path. While nothing has been sent, the
:class:`~ds2proxy.errors.ProxyError` propagates, and the route wrapper
(:func:`ds2proxy.plugin_api.wrap_handler`) answers with a plain HTTP error in
the family's shape. Once the stream has begun, the renderer's error frames
and the terminator are written, then the same error propagates, so the
route wrapper — the single place a request ends — records it once, whether
it came before or after output.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from aiohttp import web

from .canonical import TurnEvent
from .errors import ProxyError
from .sse import ClientGone, StreamWriter

log = logging.getLogger("ds2proxy.relay")


class Renderer(Protocol):
    """A dialect's stream rendering. A frame is whatever the writer sends:
    a JSON-able payload, or for SSE an ``(event name, payload)`` pair."""

    def frames(self, event: TurnEvent) -> Sequence[Any]:
        """The frames for one canonical event (often none)."""
        ...

    def error(self, error: ProxyError) -> Sequence[Any]:
        """The in-band error frames for a failure after the stream began,
        including any terminator the dialect sends after an error."""
        ...

    def end(self) -> Sequence[Any]:
        """The frames that close a stream that ended normally (e.g. ``[DONE]``)."""
        ...

    # Optional: ``frames_of(batch)``, the frames of several events at once,
    # exactly those of ``frames`` for each in turn (for a hot text path);
    # ``text_runs = True`` when ``frames`` takes TextRun events (a turn that
    # can hands over runs of answer texts as one; see canonical.TextRun);
    # ``usage_in_stream = False`` when the client receives no usage (the turn
    # then counts it after the stream ended, not before the finish frame).


class EventSource(Protocol):
    """What the relay streams: a turn (anything with its ``batches``)."""

    def batches(self) -> AsyncIterator[list[TurnEvent]]:
        """Canonical events, a batch per upstream read (never held back)."""
        ...


async def relay(writer: StreamWriter, turn: EventSource,
                renderer: Renderer) -> web.StreamResponse:
    """Stream ``turn`` through ``renderer`` to ``writer`` and end it.

    Raises the turn's ProxyError (after the in-band error when the stream
    had begun) and :class:`ClientGone` when the client left.
    """
    if not getattr(renderer, "usage_in_stream", True):
        count_after = getattr(turn, "count_usage_after", None)
        if count_after is not None:
            count_after()
    if getattr(renderer, "text_runs", False):
        take_runs = getattr(turn, "take_text_runs", None)
        if take_runs is not None:
            take_runs()
    try:
        render = renderer.frames
        # A renderer may render a whole batch at once (the same frames).
        render_all = getattr(renderer, "frames_of", None)
        async for batch in writer.pace(turn.batches()):
            if len(batch) == 1:
                frames = render(batch[0])
            elif render_all is not None:
                frames = render_all(batch)
            else:
                frames = [frame for event in batch for frame in render(event)]
            if frames:
                await writer.send_all(frames)
    except ProxyError as exc:
        if not writer.prepared:
            raise
        error = exc
    except ClientGone:
        raise
    except asyncio.CancelledError:
        if writer.stopped_by is None:
            raise
        error = _resume_stopped(writer)
        if not writer.prepared:
            raise error from None
    except Exception as exc:
        if not writer.prepared:
            raise
        # A bug after the first byte still ends in the family's error shape,
        # never as a silent cut the client takes for a dropped connection.
        log.exception("stream failed after output")
        error = ProxyError(f"internal error: {type(exc).__name__}")
    else:
        await writer.send_all(renderer.end())
        return await writer.done()
    await writer.send_all(renderer.error(error))
    await writer.done()
    raise error


def _resume_stopped(writer: StreamWriter) -> ProxyError:
    """The cancellation was the writer's :meth:`~StreamWriter.stop` (a
    shutdown): take it back, so the error can still be written."""
    error = writer.stopped_by
    assert error is not None
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return error
