"""Solving a challenge off the event loop, in chunks a cancelled caller can stop.

A solve runs in a worker thread that searches the nonce range a chunk at a
time and checks a stop flag between chunks, so a client that disconnects
stops the CPU work within one chunk. The compiled search releases the GIL;
the pure-Python one does not, so its chunks run in worker processes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import sys
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from ..errors import PowError
from . import backend, reference
from .backend import Search
from .challenge import ALGORITHM, Challenge

# Nonces per chunk: a cancelled solve runs at most one more chunk
# (about 2 ms compiled, 20 ms in pure Python).
CHUNK_NATIVE = 4096
CHUNK_PYTHON = 32
# Solving is background work: when the event loop wakes up, the scheduler
# should give it a CPU ahead of the solver workers.
WORKER_NICENESS = 10

log = logging.getLogger("ds2proxy.pow")


class Solver:
    """Runs nonce searches in its own worker threads.

    ``chunk_executor``, when given, runs each chunk instead of the worker
    thread (a process pool keeps a GIL-holding search off the loop's process).
    """

    def __init__(self, search: Search, *, chunk: int,
                 chunk_executor: Executor | None = None, workers: int | None = None) -> None:
        self._search = search
        self._chunk = chunk
        self._chunk_executor = chunk_executor
        self._threads = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1,
                                           thread_name_prefix="ds2proxy-pow",
                                           initializer=_lower_thread_priority)

    async def solve(self, ch: Challenge, *, check_expiry: bool = True) -> int:
        """The answer to ``ch``; ``PowError`` if unsupported, expired or unanswerable."""
        _check_solvable(ch, check_expiry)
        stop = threading.Event()
        job = self._threads.submit(self._scan, ch.prefix, ch.target, ch.difficulty, stop)
        try:
            answer = await asyncio.wrap_future(job)
        finally:
            stop.set()  # a cancelled caller: the worker quits before its next chunk
        if answer < 0:
            raise PowError(f"no PoW answer in [0, {ch.difficulty})", retryable=True)
        if check_expiry and ch.expired():
            raise PowError("PoW challenge expired while solving", retryable=True)
        return answer

    def close(self) -> None:
        """Refuse new solves and wait for the workers, which stop once their callers left."""
        self._threads.shutdown(wait=True)
        if self._chunk_executor is not None:
            self._chunk_executor.shutdown(wait=True)

    def _scan(self, prefix: bytes, target: bytes, stop_at: int, stop: threading.Event) -> int:
        for lo in range(0, stop_at, self._chunk):
            if stop.is_set():
                return -1
            found = self._search_chunk(prefix, target, lo, min(lo + self._chunk, stop_at))
            if found >= 0:
                return found
        return -1

    def _search_chunk(self, prefix: bytes, target: bytes, lo: int, hi: int) -> int:
        if self._chunk_executor is None:
            return self._search(prefix, target, lo, hi)
        return self._chunk_executor.submit(self._search, prefix, target, lo, hi).result()


def _check_solvable(ch: Challenge, check_expiry: bool) -> None:
    if ch.algorithm != ALGORITHM:
        raise PowError(f"unsupported PoW algorithm {ch.algorithm!r}", retryable=False)
    if check_expiry and ch.expired():
        raise PowError("PoW challenge expired", retryable=True)


def _lower_thread_priority() -> None:
    # Only Linux schedules threads by their own nice value.
    if sys.platform.startswith("linux"):
        _renice(threading.get_native_id())


def _lower_process_priority() -> None:
    _renice(0)


def _renice(who: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, who, WORKER_NICENESS)
    except (AttributeError, OSError) as exc:  # no setpriority, or not permitted
        log.debug("PoW worker keeps its CPU priority: %s", exc)


def native_solver() -> Solver:
    """A solver over the compiled search (which releases the GIL)."""
    if backend.NATIVE is None:
        raise RuntimeError("the compiled PoW module is not available")
    return Solver(backend.NATIVE.search, chunk=CHUNK_NATIVE)


def python_solver() -> Solver:
    """A solver over the pure-Python search, run in worker processes."""
    # spawn: forking a process that runs threads and an event loop is unsafe.
    pool = ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn"),
                               initializer=_lower_process_priority)
    return Solver(reference.search, chunk=CHUNK_PYTHON, chunk_executor=pool)


@functools.cache
def default_solver() -> Solver:
    """The process-wide solver for the best implementation, announced in the log."""
    backend.announce()
    return native_solver() if backend.NATIVE else python_solver()


async def solve(ch: Challenge, *, check_expiry: bool = True) -> int:
    """Solve ``ch`` off the event loop; cancelling the caller stops the search."""
    return await default_solver().solve(ch, check_expiry=check_expiry)
