"""``both``: two awaitables at once; a failure or the caller's cancellation
leaves nothing running behind it."""

from __future__ import annotations

import asyncio

import pytest

from ds2proxy.overlap import both


async def test_both_results_in_order() -> None:
    async def later(value: str) -> str:
        await asyncio.sleep(0)
        return value

    assert await both(later("a"), later("b")) == ("a", "b")


async def test_a_failure_cancels_the_other_and_is_raised() -> None:
    other_started, other_cancelled = asyncio.Event(), asyncio.Event()

    async def fails() -> None:
        await other_started.wait()
        raise ValueError("session refused")

    async def slow() -> None:
        other_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            other_cancelled.set()
            raise

    with pytest.raises(ValueError, match="session refused"):
        await both(fails(), slow())
    assert other_cancelled.is_set()


async def test_cancelling_the_caller_cancels_both() -> None:
    started, running, cancelled = asyncio.Event(), [], []

    async def waits(name: str) -> None:
        running.append(name)
        if len(running) == 2:
            started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    task = asyncio.create_task(both(waits("session"), waits("pow")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == ["pow", "session"]
