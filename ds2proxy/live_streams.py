"""The streams an app is relaying, so that a shutdown can end them with an
in-band error before the server cuts their connections (see
:func:`ds2proxy.app.end_streams_before_exit`)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TypeVar

from .errors import ProxyError
from .sse import StreamWriter

W = TypeVar("W", bound=StreamWriter)


class LiveStreams:
    """The writers of the running streams (weakly: a finished one drops out)."""

    def __init__(self) -> None:
        self._writers: weakref.WeakSet[StreamWriter] = weakref.WeakSet()

    def add(self, writer: W) -> W:
        self._writers.add(writer)
        return writer

    def stop_all(self, error: Callable[[], ProxyError]) -> int:
        """End every running relay with an ``error()``; how many there were."""
        return sum(writer.stop(error()) for writer in list(self._writers))
