"""The C heap under the process: fewer malloc arenas, freed memory returned.

glibc gives each thread that allocates its own arena (up to eight per core)
and keeps what is freed in it. The proxy's threads (PoW solves, token
counts, the SQLite writers) allocate little, so two arenas serve them as
well, and the memory a burst of streams freed is reused rather than spread
over more arenas. Elsewhere (other C libraries) both calls do nothing.

After a burst of requests has drained, :class:`BurstTrimmer` hands the
heap's free pages back: a burst frees its memory in scattered chunks that
the next one cannot always reuse as they are, and without the trim each
burst could leave the process a little larger than the one before.

:func:`freeze_startup` takes what start-up built out of the cyclic
collector's sight, so a full collection during a burst walks only what the
requests made.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache
from typing import Any

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
ARENAS = 2


@cache
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before threads start); True if applied."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Hand the heap's free memory back to the system; True if any was."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


def freeze_startup() -> None:
    """Collect once, then freeze every surviving object (modules, config,
    the tokenizer's tables: tens of thousands, alive for good). A full
    collection in a burst of a thousand streams then pauses the loop about
    a third as long."""
    gc.collect()
    gc.freeze()


def collect_burst_garbage() -> None:
    """A full collection, once a burst has drained. A closed connection is
    a reference cycle (asyncio's transport holds its own read callback), so
    the burst's thousand connections wait for the next full collection; run
    now, while the loop is quiet, it hands their memory back before the next
    burst rather than in the middle of it."""
    gc.collect()


# Requests in flight at once that make a burst worth trimming after.
BURST = 100


class BurstTrimmer:
    """Settles the heap (the burst's garbage collected, then a trim in a
    thread) when the requests in flight fall to an eighth of the most seen
    since the last time, once that was a burst; and again when the last of
    that burst's requests has ended, for what the tail left.

    Caches that grow with use (a store's page cache) register with
    :meth:`on_drain` to be emptied first: each burst would otherwise find
    them a little fuller, and the process a little larger."""

    def __init__(self, burst: int = BURST) -> None:
        self.burst = burst
        self.most = 0
        self.tail = False  # a burst drained and its last requests still run
        self.listeners: list[Callable[[], object]] = []

    def on_drain(self, listener: Callable[[], object]) -> None:
        """Call ``listener`` (on the loop, quickly) each time the heap is settled."""
        self.listeners.append(listener)

    def note(self, inflight: int) -> bool:
        """Called whenever the number of requests in flight changes; True
        when a burst has just drained (and the heap was settled)."""
        if inflight > self.most:
            self.most = inflight
        elif self.most >= self.burst and inflight <= self.most // 8:
            self.most = inflight
            self.tail = inflight > 0
            self._settle()
            return True
        elif inflight == 0 and self.tail:
            self.tail = False
            self._settle()
        return False

    def _settle(self) -> None:
        for listener in self.listeners:
            listener()
        settle()


def settle() -> None:
    """Collect the garbage on the loop, then trim the heap off it."""
    collect_burst_garbage()
    asyncio.get_running_loop().run_in_executor(None, trim)
