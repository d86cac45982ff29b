"""One account's health record: what the tracker knows and persists."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any

from .settings import MAX_COOLDOWN

HEALTHY = "healthy"
COOLING = "cooling_down"
LOGIN_FAILING = "login_failing"
DISABLED = "disabled"
STATES = (HEALTHY, COOLING, LOGIN_FAILING, DISABLED)


def today(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


@dataclass(slots=True)
class AccountHealth:
    """Times are wall-clock seconds, so a cooldown survives a restart."""

    state: str = HEALTHY
    reason: str = ""
    kind: str = ""            # failure kind of the current cooldown
    since: float = 0.0        # when the current cooldown began
    until: float = 0.0        # when a trial request may go through
    strikes: dict[str, int] = field(default_factory=dict)
    last_success: float = 0.0
    last_failure: float = 0.0
    last_failure_reason: str = ""
    day: str = ""
    requests_today: int = 0   # the sum of ``counts``
    # Today's requests per counting instance: each instance adds only to its
    # own entry and copies merge entry by entry (highest wins), so two
    # instances counting at once add up instead of overwriting each other.
    counts: dict[str, int] = field(default_factory=dict)
    changed: float = 0.0      # when the state last changed (newest wins between instances)
    trial: bool = False       # a half-open trial request is in flight (not persisted)

    def count_request(self, now: float, counter: str = "") -> None:
        """One more request today, counted on ``counter`` (this instance's entry)."""
        if self.day != today(now):
            self.day, self.requests_today, self.counts = today(now), 0, {}
        self.counts[counter] = self.counts.get(counter, 0) + 1
        self.requests_today = sum(self.counts.values())

    def merge_counts(self, other: AccountHealth) -> bool:
        """Take in ``other``'s counts of today's requests (the later day wins);
        True when ``other`` lacked some of this record's."""
        if other.day > self.day:
            self.day, self.counts = other.day, dict(other.counts)
        elif other.day == self.day:
            for counter, n in other.counts.items():
                self.counts[counter] = max(self.counts.get(counter, 0), n)
        self.requests_today = sum(self.counts.values())
        return self.day != other.day or self.counts != other.counts

    def view(self, now: float) -> dict[str, Any]:
        """What the admin API and the dashboard show."""
        waiting = self.state in (COOLING, LOGIN_FAILING)
        return {
            "state": self.state,
            "reason": self.reason,
            "cooldown_seconds_left": max(0, round(self.until - now)) if waiting else 0,
            "cooling_until": self.until if waiting else None,
            "trial_in_flight": self.trial,
            "last_success": self.last_success or None,
            "last_failure": self.last_failure or None,
            "last_failure_reason": self.last_failure_reason,
            "requests_today": self.requests_today if self.day == today(now) else 0,
        }

    def to_dict(self) -> dict[str, Any]:
        """What is persisted (a copy: it may be written from another thread).
        Field by field, not ``asdict``, which deep-copies every value and is
        on every request's path (each lease's health update)."""
        data = {name: getattr(self, name) for name in _PERSISTED}
        data["strikes"] = dict(self.strikes)
        data["counts"] = dict(self.counts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AccountHealth:
        """A record as persisted, read as untrusted: the state file and other
        instances' copies may hold anything (an older build's values, a hand
        edit), and a wrong type here would fail every later request of the
        account. A value of the wrong kind reads as its default; a cooldown is
        never longer than the longest one settings allow (30 days)."""
        get = data.get if isinstance(data, dict) else {}.get
        record = cls(
            state=get("state") if get("state") in STATES else HEALTHY,
            reason=_text(get("reason")), kind=_text(get("kind")),
            since=_time(get("since")),
            until=min(_time(get("until")), time.time() + MAX_COOLDOWN),
            strikes=_tally(get("strikes")),
            last_success=_time(get("last_success")), last_failure=_time(get("last_failure")),
            last_failure_reason=_text(get("last_failure_reason")), day=_text(get("day")),
            requests_today=_count(get("requests_today")), counts=_tally(get("counts")),
            changed=_time(get("changed")))
        if record.requests_today and not record.counts:  # written before per-instance counts
            record.counts = {"": record.requests_today}
        return record


_PERSISTED = tuple(f.name for f in fields(AccountHealth) if f.name != "trial")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _time(value: Any) -> float:
    """Wall-clock seconds: a finite, non-negative number, else 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) and value > 0:
        return float(value)
    return 0.0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _tally(value: Any) -> dict[str, int]:
    """A mapping of names to counts, keeping only well-formed entries."""
    if not isinstance(value, dict):
        return {}
    return {name: n for name, n in value.items() if isinstance(name, str) and _count(n)}
