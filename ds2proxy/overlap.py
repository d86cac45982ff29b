"""Two upstream calls at once, failing as one: the turn's setup overlaps
independent round trips (a new chat session and the PoW challenge + solve).

Each overlap holds a second upstream connection for a moment (HTTP/1.1 has
one call per connection). In a burst, a thousand turns setting up at once
would open two thousand connections and keep half of them idle afterwards,
so only ``MAX_OVERLAPPING`` turns overlap at a time; beyond that a turn
makes its two calls one after the other on one connection. Nothing waits
for a slot: every call starts at once either way, only the second call of
a turn past the limit starts when its first one ended.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import TypeVar

A = TypeVar("A")
B = TypeVar("B")

# Turns whose two setup calls may run at the same time: the latency win
# matters when few turns start, the connections when many do.
MAX_OVERLAPPING = 64


class _Overlaps:
    """How many turns overlap their calls right now."""

    running = 0


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await both; the first failure cancels (or never starts) the other
    and is raised.

    Unlike ``asyncio.gather`` nothing is left running after a failure or a
    cancellation of the caller, so no work (a PoW solve) outlives the turn.
    At most ``MAX_OVERLAPPING`` callers run theirs at once; others await
    ``first`` then ``second``.
    """
    if _Overlaps.running >= MAX_OVERLAPPING:
        return await in_turn(first, second)
    _Overlaps.running += 1
    try:
        return await at_once(first, second)
    finally:
        _Overlaps.running -= 1


async def at_once(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both at the same time; the first failure cancels the other."""
    tasks = (asyncio.ensure_future(first), asyncio.ensure_future(second))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return tasks[0].result(), tasks[1].result()


async def in_turn(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """``first``, then ``second``; a failure of the first closes the second
    unstarted."""
    try:
        a = await first
    except BaseException:
        if inspect.iscoroutine(second):
            second.close()
        raise
    return a, await second
