"""A clock the tests move by hand."""

from __future__ import annotations


class Clock:
    """``clock()`` is ``clock.now`` (seconds): passed where code takes a clock,
    so cooldowns, windows and expiries pass without waiting."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
