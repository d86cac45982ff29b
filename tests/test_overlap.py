"""``both``: two awaitables at once; a failure or the caller's cancellation
leaves nothing running behind it."""

from __future__ import annotations

import asyncio

import pytest

from ds2proxy import overlap
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


async def test_past_the_limit_a_turn_makes_its_calls_one_after_the_other(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each overlap holds a second upstream connection: beyond the limit the
    second call starts when the first ended, and nothing waits for a slot."""
    monkeypatch.setattr(overlap, "MAX_OVERLAPPING", 1)
    release, started = asyncio.Event(), []

    async def call(name: str) -> str:
        started.append(name)
        await release.wait()
        return name

    holder = asyncio.create_task(both(call("a1"), call("a2")))
    while len(started) < 2:
        await asyncio.sleep(0)
    later = asyncio.create_task(both(call("b1"), call("b2")))
    while "b1" not in started:
        await asyncio.sleep(0)
    assert "b2" not in started  # b1 has not ended yet
    release.set()
    assert await later == ("b1", "b2") and await holder == ("a1", "a2")
    assert started.index("b2") > started.index("b1")


async def test_past_the_limit_a_first_failure_leaves_the_second_unstarted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlap, "MAX_OVERLAPPING", 0)
    ran = []

    async def fails() -> None:
        raise ValueError("session refused")

    async def second() -> None:
        ran.append("second")

    pending = second()
    with pytest.raises(ValueError, match="session refused"):
        await both(fails(), pending)
    assert ran == [] and pending.cr_frame is None  # closed, never run
