"""Per-key limits: requests per minute, tokens per day, concurrent requests.

Checked before any account, session or PoW is spent. Requests per minute is a
sliding 60-second window (``Retry-After`` says when the oldest request leaves
it); tokens per day reset at 00:00 UTC and are seeded from the usage store at
start, so a restart does not hand out a fresh day. The clock is injectable so
tests can cross a reset without waiting for it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import RateLimited
from .keyring import KeyConfig

DAY = 86400.0
WINDOW = 60.0


def day_of(ts: float) -> int:
    return int(ts // DAY)


class KeyLimiter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._recent: dict[str, deque[float]] = {}
        self._active: dict[str, int] = {}
        self._tokens: dict[str, tuple[int, int]] = {}  # name -> (day, tokens)

    # -- requests per minute -----------------------------------------------------------

    def admit(self, key: KeyConfig) -> None:
        """Count one request against the key's per-minute limit, or raise 429."""
        limit = key.limits.rpm
        if not limit:
            return
        now = self.clock()
        window = self._recent.setdefault(key.name, deque())
        while window and window[0] <= now - WINDOW:
            window.popleft()
        if len(window) >= limit:
            wait = max(1, math.ceil(window[0] + WINDOW - now))
            raise RateLimited(f"API key '{key.name}' exceeded its limit of {limit} requests "
                              f"per minute; retry in {wait} s", retry_after=wait,
                              code="key_rate_limit")
        window.append(now)

    def requests_last_minute(self, name: str) -> int:
        now = self.clock()
        return sum(1 for t in self._recent.get(name, ()) if t > now - WINDOW)

    # -- tokens per day ------------------------------------------------------------------

    def tokens_today(self, name: str) -> int:
        day, used = self._tokens.get(name, (-1, 0))
        return used if day == day_of(self.clock()) else 0

    def seed_tokens(self, name: str, used: int) -> None:
        self._tokens[name] = (day_of(self.clock()), used)

    def add_tokens(self, name: str, tokens: int) -> None:
        if tokens > 0:
            self._tokens[name] = (day_of(self.clock()), self.tokens_today(name) + tokens)

    def check_tokens(self, key: KeyConfig) -> None:
        limit = key.limits.tokens_per_day
        if limit and self.tokens_today(key.name) >= limit:
            now = self.clock()
            wait = max(1, math.ceil((day_of(now) + 1) * DAY - now))
            raise RateLimited(f"API key '{key.name}' used its {limit} tokens for today "
                              f"(UTC); the quota resets in {wait} s", retry_after=wait,
                              code="key_token_quota")

    # -- concurrency ---------------------------------------------------------------------

    def active(self, name: str) -> int:
        return self._active.get(name, 0)

    @contextmanager
    def hold(self, key: KeyConfig) -> Iterator[None]:
        """One concurrent slot for the key's turn, or 429."""
        limit = key.limits.concurrent
        if limit and self.active(key.name) >= limit:
            raise RateLimited(f"API key '{key.name}' already has {limit} requests in "
                              "progress, its concurrency limit", retry_after=1,
                              code="key_concurrency_limit")
        self._active[key.name] = self.active(key.name) + 1
        try:
            yield
        finally:
            self._active[key.name] = max(0, self.active(key.name) - 1)
