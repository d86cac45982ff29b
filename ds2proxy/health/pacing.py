"""Per-account pacing: a minimum interval (plus random jitter) between two
requests on one account, and a cap on requests per rolling hour.

Uses the monotonic clock: pacing is about spacing, not about dates, and
does not need to survive a restart.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable

from .settings import PacingSettings

HOUR = 3600.0


class Pacer:
    def __init__(self, settings: PacingSettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.settings = settings or PacingSettings()
        self._clock = clock
        self._rng = rng or random.Random()
        self._next: dict[str, float] = {}          # earliest next start per account
        self._starts: dict[str, deque[float]] = {}  # starts within the last hour

    def configure(self, settings: PacingSettings) -> None:
        self.settings = settings

    def ready_at(self, identifier: str) -> float:
        """Monotonic time from which ``identifier`` may start a request."""
        s = self.settings
        if not s.enabled:
            return 0.0
        at = self._next.get(identifier, 0.0)
        starts = self._prune(identifier)
        if s.max_per_hour and len(starts) >= s.max_per_hour:
            at = max(at, starts[len(starts) - s.max_per_hour] + HOUR)
        return at

    def ready(self, identifier: str) -> bool:
        return self._clock() >= self.ready_at(identifier)

    def started(self, identifier: str) -> None:
        s = self.settings
        if not s.enabled:
            return
        now = self._clock()
        gap = s.min_interval_seconds + (self._rng.uniform(0, s.jitter_seconds)
                                        if s.jitter_seconds else 0.0)
        self._next[identifier] = now + gap
        self._starts.setdefault(identifier, deque()).append(now)

    def starts(self, identifier: str) -> list[float]:
        """Start times within the last hour (for status and tests)."""
        return list(self._prune(identifier))

    def now(self) -> float:
        return self._clock()

    def _prune(self, identifier: str) -> deque[float]:
        starts = self._starts.setdefault(identifier, deque())
        horizon = self._clock() - HOUR
        while starts and starts[0] <= horizon:
            starts.popleft()
        return starts
