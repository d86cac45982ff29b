"""Pacing across instances: one place that says whether an account may start.

In one process the :class:`ds2proxy.health.Pacer` decides alone. With a
shared store each start must also be claimed from the gate, atomically, so
the minimum interval and the hourly cap hold for the whole cluster.
``claim`` answers 0 when the start is granted (and recorded), else the
seconds until it could be.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

HOUR = 3600.0


class PaceGate(Protocol):
    async def claim(self, identifier: str, gap: float, max_per_hour: int) -> float:
        """Grant one start now (next allowed ``gap`` seconds later), or the wait."""


class MemoryPaceGate:
    """The gate of one process (the same rules the Redis gate applies)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next: dict[str, float] = {}
        self._starts: dict[str, deque[float]] = {}

    async def claim(self, identifier: str, gap: float, max_per_hour: int) -> float:
        now = self._clock()
        wait = self._next.get(identifier, 0.0) - now
        if wait > 0:
            return wait
        starts = self._starts.setdefault(identifier, deque())
        while starts and starts[0] <= now - HOUR:
            starts.popleft()
        if max_per_hour and len(starts) >= max_per_hour:
            return max(starts[len(starts) - max_per_hour] + HOUR - now, 0.001)
        starts.append(now)
        if gap > 0:
            self._next[identifier] = now + gap
        return 0.0
