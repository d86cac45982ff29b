"""Slow down guessing of the admin key: per-address exponential back-off.

The first few failures from an address are free (people mistype); after that
each further failure doubles the time the address must wait before it may
try again, up to a cap. A success clears the address's record.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import RateLimited


@dataclass(slots=True)
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_seen: float = 0.0


class LoginThrottle:
    def __init__(self, *, free_attempts: int = 5, base_delay: float = 1.0,
                 max_delay: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 max_addresses: int = 10000) -> None:
        self.free_attempts = free_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._max_addresses = max_addresses
        self._records: dict[str, _Record] = {}

    def check(self, address: str) -> None:
        """Raise 429 with Retry-After while ``address`` must wait."""
        record = self._records.get(address)
        if record is None:
            return
        wait = record.locked_until - self._clock()
        if wait > 0:
            raise RateLimited("too many failed admin logins from this address; try again later",
                              retry_after=max(1, math.ceil(wait)), code="login_throttled")

    def failed(self, address: str) -> None:
        now = self._clock()
        record = self._records.setdefault(address, _Record())
        record.failures += 1
        record.last_seen = now
        over = record.failures - self.free_attempts
        if over >= 0:
            record.locked_until = now + min(self.max_delay, self.base_delay * (2 ** over))
        self._forget_old()

    def succeeded(self, address: str) -> None:
        self._records.pop(address, None)

    def failures(self, address: str) -> int:
        record = self._records.get(address)
        return record.failures if record else 0

    def _forget_old(self) -> None:
        """Bound memory: drop the records idle longest once there are too many."""
        if len(self._records) <= self._max_addresses:
            return
        idle = sorted(self._records, key=lambda a: self._records[a].last_seen)
        for address in idle[: len(idle) - self._max_addresses]:
            del self._records[address]
