"""Provider-level cooldowns: a provider that answered 429 or 5xx (or timed
out) is skipped until its cooldown ends, so a route goes straight to its
next target instead of asking a provider that just refused.

A provider's own ``Retry-After`` is the cooldown when it sends one; without
it the account backoff of ``health.cooldown`` applies (``rate_limited`` for a
429, ``upstream`` for the rest), doubling per consecutive failure. After a
cooldown one request is let through (half-open); its outcome decides.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ProxyError
from ..health import HealthSettings, classify

log = logging.getLogger("ds2proxy.providers")


@dataclass(slots=True)
class ProviderState:
    until: float = 0.0
    strikes: int = 0
    reason: str = ""
    trial: bool = False


class ProviderHealth:
    """Cooldowns of every provider, by name."""

    def __init__(self, settings: HealthSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._states: dict[str, ProviderState] = {}

    def _state(self, name: str) -> ProviderState:
        return self._states.setdefault(name, ProviderState())

    def available(self, name: str) -> bool:
        """Not cooling down, or due its one trial request (which it takes)."""
        state = self._states.get(name)
        if state is None or not state.strikes or not self.settings.enabled:
            return True
        if state.trial or self._clock() < state.until:
            return False
        state.trial = True
        return True

    def seconds_left(self, name: str) -> int:
        state = self._states.get(name)
        if state is None:
            return 0
        return max(0, math.ceil(state.until - self._clock()))

    def succeeded(self, name: str) -> None:
        state = self._states.get(name)
        if state is not None and state.strikes:
            log.warning("provider %s: healthy again after %s", name, state.reason)
            self._states[name] = ProviderState()

    def forget(self, name: str) -> None:
        """The provider's settings changed (or it is gone): its record says
        nothing of the new ones."""
        if self._states.pop(name, None) is not None:
            log.warning("provider %s: settings changed, its cooldown forgotten", name)

    def finished(self, name: str) -> None:
        """A request ended without a verdict: a trial may be tried again."""
        state = self._states.get(name)
        if state is not None:
            state.trial = False

    def failed(self, name: str, exc: ProxyError) -> None:
        """Cool ``name`` down when ``exc`` is the provider's fault."""
        self.finished(name)  # a trial that failed for the request's sake is over too
        failure = classify(exc)
        if failure is None or failure.kind == "auth" or exc.code == "provider_busy":
            return
        state = self._state(name)
        state.strikes += 1
        seconds = failure.retry_after or self.settings.cooldown_for(failure.kind, state.strikes)
        state.until = self._clock() + seconds
        state.reason = failure.reason[:300]
        log.warning("provider %s: cooling down for %.0fs (failure %d): %s", name, seconds,
                    state.strikes, state.reason)

    def view(self, name: str) -> dict[str, object]:
        """What the admin and metrics show for one provider."""
        left = self.seconds_left(name)
        state = self._states.get(name, ProviderState())
        return {"state": "cooling_down" if left else "healthy", "cooldown_seconds": left,
                "reason": state.reason if left else ""}
