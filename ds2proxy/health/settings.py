"""Account-health and pacing settings (config section ``health``).

Every value is hot-reloadable: the tracker and the pacer read the current
settings at each decision, so a change applies to the next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..settings_schema import FormSpec, parse_section, section, setting

# Failure kinds an account can cool down for (see ds2proxy.health.classify).
KINDS = ("rate_limited", "upstream", "auth", "login")
GROUP = "Account health and pacing"
# Upper bounds: times are shown and stored as whole seconds (a 64-bit integer
# in JSON), and beyond these an account is simply never used again.
MAX_COOLDOWN = 30 * 86400.0
MAX_INTERVAL = 86400.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Cooldown after the n-th consecutive failure: base * 2**(n-1), capped.
    A cap below the base means the base (each field is valid on its own, so
    the settings form can change either alone)."""

    base_seconds: float = setting(
        60.0, "First cooldown after a failure of this kind; doubles per consecutive failure.",
        min=0.1, max=MAX_COOLDOWN, form=FormSpec(GROUP, "first cooldown (s)"))
    max_seconds: float = setting(
        1800.0, "Longest cooldown of this kind (the cap the doubling stops at).",
        min=0.1, max=MAX_COOLDOWN, form=FormSpec(GROUP, "longest cooldown (s)"))

    @property
    def cap(self) -> float:
        return max(self.base_seconds, self.max_seconds)

    def seconds(self, strikes: int) -> float:
        return min(self.cap, self.base_seconds * 2 ** max(0, min(strikes - 1, 30)))


@dataclass(frozen=True, slots=True)
class CooldownSettings:
    """One backoff per failure kind (attribute names are ``KINDS``)."""

    rate_limited: Backoff = section(
        lambda: Backoff(60.0, 1800.0),
        "After an upstream rate limit (HTTP 429, a rate_limit_reached hint, empty output "
        "twice).", label="Rate limit:")
    upstream: Backoff = section(
        lambda: Backoff(10.0, 600.0),
        "After an upstream 5xx, a broken stream, a transport error or a PoW failure.",
        label="Upstream error:")
    auth: Backoff = section(
        lambda: Backoff(600.0, 21600.0),
        "After a token is refused again right after a fresh login (a banned or muted "
        "account).", label="Refused token:")
    login: Backoff = section(
        lambda: Backoff(60.0, 3600.0),
        "Before an account whose login failed may log in again.", label="Failed login:")

    def of(self, kind: str) -> Backoff:
        return getattr(self, kind) if kind in KINDS else self.upstream


DEFAULT_BACKOFF = {kind: CooldownSettings().of(kind) for kind in KINDS}


@dataclass(frozen=True, slots=True)
class PacingSettings:
    """Per-account pacing; all zero (the default) means no pacing."""

    min_interval_seconds: float = setting(
        0.0, "Least time between two requests starting on one account (0: off).", min=0.0,
        max=MAX_INTERVAL, form=FormSpec(GROUP, "minimum interval (s)"))
    jitter_seconds: float = setting(
        0.0, "A random 0..this is added to each interval.", min=0.0, max=MAX_INTERVAL,
        form=FormSpec(GROUP, "jitter (s)"))
    max_per_hour: int = setting(
        0, "Most requests one account starts in any rolling hour (0: no cap); requests over "
        "it wait in the queue or go to another account.", min=0, max=1_000_000,
        form=FormSpec(GROUP, "requests per hour"))

    @property
    def enabled(self) -> bool:
        return bool(self.min_interval_seconds or self.jitter_seconds or self.max_per_hour)


def _at_most_nine_tenths(path: str, value: float) -> float:
    return min(value, 0.9)


@dataclass(frozen=True, slots=True)
class HealthSettings:
    enabled: bool = setting(
        True, "Track account health (cooldowns, half-open trials, login backoff). false: "
        "every account counts as healthy except the disabled ones.",
        form=FormSpec(GROUP, "Track account health",
                      "Cool failing accounts down and heal them with one trial request. Off: "
                      "every account serves except the disabled ones."))
    jitter: float = setting(
        0.2, "Each cooldown is stretched or shrunk at random by up to this fraction (0.2 = "
        "±20%), so accounts do not all come back at once; above 0.9 counts as 0.9.", min=0.0,
        check=_at_most_nine_tenths, form=FormSpec(GROUP, "Cooldown jitter"))
    cooldown: CooldownSettings = section(
        CooldownSettings, "Cooldowns per failure kind: base_seconds * 2^(n-1) after the n-th "
        "failure in a row, at most max_seconds.")
    pacing: PacingSettings = section(PacingSettings, "Per-account pacing.", label="Pacing:")

    def cooldown_for(self, kind: str, strikes: int) -> float:
        return self.cooldown.of(kind).seconds(strikes)


def parse_health(data: dict[str, Any]) -> HealthSettings:
    """``health`` of a raw config document (ConfigError names the field)."""
    parsed: HealthSettings = parse_section(HealthSettings, data.get("health"), "health.")
    return parsed
