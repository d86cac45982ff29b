"""Per-account pacing: a minimum interval (plus random jitter) between two
requests on one account, and a cap on requests per rolling hour.

Uses the monotonic clock: pacing is about spacing, not about dates, and
does not need to survive a restart. With shared state a ``gate`` (see
:mod:`ds2proxy.state.pace_gate`) must also grant each start, so the spacing
holds across instances; a refusal is remembered here until it expires.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable

from ..state.pace_gate import PaceGate
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
        self._last: dict[str, float] = {}           # the latest start per account
        self.gate: PaceGate | None = None

    def configure(self, settings: PacingSettings) -> None:
        """A shorter interval applies to the gaps already running: after an
        interval lowered from an hour to a second, an account that started a
        request a minute ago may start the next now, not in 59 minutes."""
        self.settings = settings
        longest = settings.min_interval_seconds + settings.jitter_seconds
        now = self._clock()
        for identifier, at in self._next.items():
            self._next[identifier] = min(at, self._last.get(identifier, now) + longest)

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

    def maybe_waiting(self) -> list[str]:
        """Every account :meth:`ready` may say no to (and a few more): only
        accounts that ever started a request can be held back."""
        s = self.settings
        if not s.enabled:
            return []
        now, cap = self._clock(), s.max_per_hour
        return [i for i, at in self._next.items()
                if at > now or (cap and len(self._starts.get(i, ())) >= cap)]

    async def claim(self, identifier: str) -> bool:
        """Ask the shared gate for this start (True without one); a refusal
        holds the account back here until the gate's wait is over."""
        s = self.settings
        if self.gate is None or not s.enabled:
            return True
        wait = await self.gate.claim(identifier, self._gap(), s.max_per_hour)
        if wait > 0:
            self._next[identifier] = max(self._next.get(identifier, 0.0), self._clock() + wait)
            return False
        return True

    def started(self, identifier: str) -> None:
        s = self.settings
        if not s.enabled:
            return
        now = self._clock()
        self._next[identifier] = now + self._gap()
        self._last[identifier] = now
        self._starts.setdefault(identifier, deque()).append(now)

    def _gap(self) -> float:
        s = self.settings
        return s.min_interval_seconds + (self._rng.uniform(0, s.jitter_seconds)
                                         if s.jitter_seconds else 0.0)

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
