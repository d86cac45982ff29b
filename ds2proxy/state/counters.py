"""Per-key request and token counters, the state behind key limits.

:class:`KeyCounters` is what the limits need from a store; the in-process
:class:`MemoryCounters` serves one instance (and is what
:class:`ds2proxy.limits.KeyLimiter` counts with), the Redis one a cluster.
Requests per minute are a sliding window: ``hit`` answers 0 when the request
is admitted (and counts it), else the seconds until the oldest request in the
window leaves it. Tokens per day reset at 00:00 UTC.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

DAY = 86400.0
WINDOW = 60.0


def day_of(ts: float) -> int:
    return int(ts // DAY)


class KeyCounters(Protocol):
    async def hit(self, name: str, limit: int, window: float = WINDOW) -> float:
        """Count one request if fewer than ``limit`` in ``window``; else the wait."""

    async def count(self, name: str, window: float = WINDOW) -> int:
        """Requests of ``name`` within the last ``window`` seconds."""

    async def add_tokens(self, name: str, tokens: int) -> int:
        """Add to today's tokens of ``name``; today's total."""

    async def tokens(self, name: str) -> int:
        """Today's tokens of ``name`` (UTC day)."""

    async def take_slot(self, name: str, limit: int) -> str | None:
        """One of ``name``'s ``limit`` concurrent slots, or None when all are held."""

    async def hit_and_take_slot(self, name: str, rpm: int, limit: int,
                                window: float = WINDOW) -> tuple[float, str | None]:
        """Both at once or neither: (wait, None) when the window is full, (0,
        None) when every slot is held, else (0, a slot) with the request counted."""

    def give_slot(self, name: str, slot: str) -> None:
        """Release a slot from ``take_slot`` (never blocks, never raises)."""

    async def slots(self, name: str) -> int:
        """Slots of ``name`` held now."""


class MemoryCounters:
    """One process's counters; every method is also available without a loop."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._recent: dict[str, deque[float]] = {}
        self._tokens: dict[str, tuple[int, int]] = {}  # name -> (day, tokens)
        self._slots: dict[str, set[str]] = {}
        self._serial = itertools.count(1)

    # -- synchronous core (the key limiter's hot path) ---------------------------------

    def hit_now(self, name: str, limit: int, window: float = WINDOW) -> float:
        now = self.clock()
        recent = self._window(name, now, window)
        if len(recent) >= limit:
            # The window may hold more than ``limit`` (the limit was lowered):
            # room comes when all but ``limit - 1`` have left, not the oldest.
            return max(recent[len(recent) - limit] + window - now, 0.001)
        recent.append(now)
        return 0.0

    def count_now(self, name: str, window: float = WINDOW) -> int:
        now = self.clock()
        return sum(1 for t in self._recent.get(name, ()) if t > now - window)

    def _day(self, name: str) -> tuple[int, int]:
        """``name``'s current (day, tokens). A day never goes back: a clock
        stepped back over midnight (NTP) keeps counting the new day, not a
        fresh count that would drop the new day's tokens when it comes back."""
        day, used = self._tokens.get(name, (-1, 0))
        today = day_of(self.clock())
        return (day, used) if day >= today else (today, 0)

    def tokens_now(self, name: str) -> int:
        return self._day(name)[1]

    def seed_tokens(self, name: str, used: int) -> None:
        self._tokens[name] = (day_of(self.clock()), used)

    def add_tokens_now(self, name: str, tokens: int) -> int:
        if tokens > 0:
            day, used = self._day(name)
            self._tokens[name] = (day, used + tokens)
        return self.tokens_now(name)

    def _window(self, name: str, now: float, window: float) -> deque[float]:
        recent = self._recent.setdefault(name, deque())
        while recent and recent[0] <= now - window:
            recent.popleft()
        return recent

    # -- the KeyCounters interface ---------------------------------------------------------

    async def hit(self, name: str, limit: int, window: float = WINDOW) -> float:
        return self.hit_now(name, limit, window)

    async def count(self, name: str, window: float = WINDOW) -> int:
        return self.count_now(name, window)

    async def add_tokens(self, name: str, tokens: int) -> int:
        return self.add_tokens_now(name, tokens)

    async def tokens(self, name: str) -> int:
        return self.tokens_now(name)

    async def take_slot(self, name: str, limit: int) -> str | None:
        held = self._slots.setdefault(name, set())
        if len(held) >= limit:
            return None
        slot = str(next(self._serial))
        held.add(slot)
        return slot

    async def hit_and_take_slot(self, name: str, rpm: int, limit: int,
                                window: float = WINDOW) -> tuple[float, str | None]:
        now = self.clock()
        recent = self._window(name, now, window)
        if len(recent) >= rpm:
            return max(recent[len(recent) - rpm] + window - now, 0.001), None
        slot = await self.take_slot(name, limit)
        if slot is not None:
            recent.append(now)
        return 0.0, slot

    def give_slot(self, name: str, slot: str) -> None:
        self._slots.get(name, set()).discard(slot)

    async def slots(self, name: str) -> int:
        return len(self._slots.get(name, ()))
