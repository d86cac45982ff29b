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


def test_caches_are_emptied_before_each_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache registered with on_drain is emptied each time the heap is
    settled (the drained burst, then its tail), before the collection."""
    order: list[str] = []
    monkeypatch.setattr(heap, "settle", lambda: order.append("settle"))
    trimmer = heap.BurstTrimmer(burst=100)
    trimmer.on_drain(lambda: order.append("cache"))
    rising = list(range(1, 151))
    for count in rising + rising[::-1] + [0]:
        trimmer.note(count)
    assert order == ["cache", "settle", "cache", "settle"]


def sqlite_memory_used() -> int | None:
    """Bytes SQLite has allocated in this process (None where not counted)."""
    import ctypes
    import ctypes.util
    import sqlite3  # noqa: F401  (loads the library the module uses)

    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    if lib.sqlite3_status64(0, ctypes.byref(current), ctypes.byref(highest), 0) != 0:
        return None  # SQLITE_STATUS_MEMORY_USED
    return current.value or None


async def test_the_usage_store_page_cache_is_handed_back(tmp_path) -> None:
    """The request log's page cache grows as the log is written and read;
    release_memory (called when a burst drained) empties it."""
    from test_usage_store import row

    from ds2proxy.state.usage import SQLiteUsage

    import time

    store = await asyncio.to_thread(SQLiteUsage, str(tmp_path / "usage.sqlite"))
    try:
        now = time.time()
        for i in range(6000):
            store.record(row(now - i, key_name=f"key-{i % 40}"))
        await store.flush()
        await store.requests({}, 50, 5000)  # reads pages the writes did not keep
        full = sqlite_memory_used()
        if full is None:
            pytest.skip("this SQLite does not count its memory")
        store.release_memory()
        await store.flush()
        emptied = sqlite_memory_used()
        assert emptied is not None and full - emptied > 256 * 1024, (full, emptied)
        rows, total = await store.requests({}, 5, 0)
        assert total == 6000 and len(rows) == 5
    finally:
        await store.close()
