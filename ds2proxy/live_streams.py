"""The streams and turns an app is serving, so that a shutdown can end them
with the family's error before the server cuts their connections (see
:func:`ds2proxy.app.end_streams_before_exit`).

A stream ends in-band through its writer. A turn answered as one document
(non-stream) has no writer: its handler task is cancelled and the
cancellation is turned back into the error where the turn was opened
(:meth:`LiveStreams.serving`), so the route answers it in its family's
shape, as it answers any other failure.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from .errors import ProxyError
from .sse import StreamWriter

W = TypeVar("W", bound=StreamWriter)


class _Served:
    """One turn being served: its handler task, and the error that stops it."""

    __slots__ = ("task", "error")

    def __init__(self, task: asyncio.Task) -> None:
        self.task = task
        self.error: ProxyError | None = None


class LiveStreams:
    """The writers of the running streams (weakly: a finished one drops out)
    and the turns being served."""

    def __init__(self) -> None:
        # Each writer with its handler's task (weakly both: the task's result
        # holds the response, and so the request that holds the writer).
        self._writers: weakref.WeakKeyDictionary[StreamWriter, Callable[[], object]] = (
            weakref.WeakKeyDictionary())
        self._served: set[_Served] = set()

    def add(self, writer: W) -> W:
        """Track ``writer``, made by the handler running now."""
        task = _current_task()
        self._writers[writer] = weakref.ref(task) if task is not None else _none
        return writer

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Around a turn's whole life in its handler: a stop ends it with
        its error (raised here), unless a stream writer of the same task
        ends it in-band."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        served = _Served(task)
        self._served.add(served)
        try:
            yield
        except asyncio.CancelledError:
            if served.error is None:
                raise
            task.uncancel()
            raise served.error from None
        finally:
            self._served.discard(served)

    def stop_all(self, error: Callable[[], ProxyError]) -> int:
        """End every running relay and every turn outside one with an
        ``error()``; how many there were."""
        writers = list(self._writers.items())
        streaming = {task() for _, task in writers}
        ended = sum(writer.stop(error()) for writer, _ in writers)
        for served in list(self._served):
            if served.task in streaming or served.task.done() or served.error is not None:
                continue
            served.error = error()
            served.task.cancel()
            ended += 1
        return ended


def _current_task() -> asyncio.Task | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop (a writer made outside a handler)
        return None


def _none() -> None:
    return None
