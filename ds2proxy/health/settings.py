"""Account-health and pacing settings (config section ``health``).

Every value is hot-reloadable: the tracker and the pacer read the current
settings at each decision, so a change applies to the next request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config_values import _get, _int, _num

# Failure kinds an account can cool down for (see ds2proxy.health.classify).
KINDS = ("rate_limited", "upstream", "auth", "login")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Cooldown after the n-th consecutive failure: base * 2**(n-1), capped.
    A cap below the base means the base (each field is valid on its own, so
    the settings form can change either alone)."""

    base_seconds: float
    max_seconds: float

    @property
    def cap(self) -> float:
        return max(self.base_seconds, self.max_seconds)

    def seconds(self, strikes: int) -> float:
        return min(self.cap, self.base_seconds * 2 ** max(0, min(strikes - 1, 30)))


DEFAULT_BACKOFF = {
    "rate_limited": Backoff(60.0, 1800.0),
    "upstream": Backoff(10.0, 600.0),
    "auth": Backoff(600.0, 21600.0),
    "login": Backoff(60.0, 3600.0),
}


@dataclass(frozen=True, slots=True)
class PacingSettings:
    """Per-account pacing; all zero (the default) means no pacing."""

    min_interval_seconds: float = 0.0
    jitter_seconds: float = 0.0
    max_per_hour: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.min_interval_seconds or self.jitter_seconds or self.max_per_hour)


@dataclass(frozen=True, slots=True)
class HealthSettings:
    enabled: bool = True
    jitter: float = 0.2  # a cooldown is stretched or shrunk by up to this fraction
    backoff: dict[str, Backoff] = field(default_factory=lambda: dict(DEFAULT_BACKOFF))
    pacing: PacingSettings = field(default_factory=PacingSettings)

    def cooldown(self, kind: str, strikes: int) -> float:
        return self.backoff.get(kind, DEFAULT_BACKOFF["upstream"]).seconds(strikes)


def parse_health(data: dict) -> HealthSettings:
    """Validate ``health`` of a raw config document (ConfigError names the field)."""
    d = HealthSettings()
    backoff = {}
    for kind, default in DEFAULT_BACKOFF.items():
        where = f"health.cooldown.{kind}"
        base = _num(data, f"{where}.base_seconds", default.base_seconds, 0.1)
        cap = _num(data, f"{where}.max_seconds", default.max_seconds, 0.1)
        backoff[kind] = Backoff(base, cap)
    jitter = _num(data, "health.jitter", d.jitter, 0.0)
    return HealthSettings(
        enabled=_get(data, "health.enabled", bool, d.enabled),
        jitter=min(jitter, 0.9),
        backoff=backoff,
        pacing=PacingSettings(
            min_interval_seconds=_num(data, "health.pacing.min_interval_seconds", 0.0, 0.0),
            jitter_seconds=_num(data, "health.pacing.jitter_seconds", 0.0, 0.0),
            max_per_hour=_int(data, "health.pacing.max_per_hour", 0, 0, 1_000_000) or 0,
        ),
    )
