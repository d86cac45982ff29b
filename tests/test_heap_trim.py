"""The heap is handed back once after a drained burst of requests, never
during one and never for a handful of requests."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

from ds2proxy import heap


def started(inflight: list[int]) -> int:
    trimmer = heap.BurstTrimmer(burst=100)
    return sum(trimmer.note(count) for count in inflight)


async def test_a_drained_burst_trims_once_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    trimmed = threading.Event()
    collected: list[int] = []
    monkeypatch.setattr(heap, "trim", trimmed.set)
    monkeypatch.setattr(heap, "collect_burst_garbage", lambda: collected.append(1))
    rising = list(range(1, 151))
    assert started(rising + rising[::-1] + [0]) == 1
    # on draining to an eighth, then once the burst's tail has ended too
    assert collected == [1, 1]
    assert await asyncio.to_thread(trimmed.wait, 5)


def test_the_garbage_a_burst_left_is_collected() -> None:
    """A closed connection's transport is a reference cycle: only a full
    collection frees it, and the drained burst runs one."""
    class Transport:
        def read_ready(self) -> None: ...

    gc.disable()
    try:
        cycle = Transport()
        cycle.callback = cycle.read_ready  # type: ignore[attr-defined]
        gone = weakref.ref(cycle)
        del cycle
        assert gone() is not None
        heap.collect_burst_garbage()
        assert gone() is None
    finally:
        gc.enable()


async def test_a_few_requests_never_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "trim", lambda: True)
    assert started([1, 2, 3, 2, 1, 0] * 50) == 0


async def test_no_trim_while_the_burst_is_still_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "trim", lambda: True)
    assert started(list(range(1, 151)) + list(range(150, 40, -1))) == 0
