"""Live request statistics for the admin overview (no secrets, bounded memory)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from .heap import BurstTrimmer


@dataclass
class Monitor:
    requests_total: int = 0
    inflight: int = 0
    errors_total: int = 0
    recent_errors: deque = field(default_factory=lambda: deque(maxlen=50))
    started_at: float = field(default_factory=time.time)
    # Gives the memory of a drained burst of requests back to the system.
    trimmer: BurstTrimmer = field(default_factory=BurstTrimmer, repr=False)

    def request_started(self) -> None:
        self.requests_total += 1
        self.inflight += 1
        self.trimmer.note(self.inflight)

    def request_finished(self) -> None:
        self.inflight = max(0, self.inflight - 1)
        self.trimmer.note(self.inflight)

    def request_error(self, message: str, *, status: int | None = None, path: str = "") -> None:
        """A failed request (recorded once, where the request ends)."""
        self.errors_total += 1
        self._recent(message, status, path)

    def account_error(self, identifier: str, message: str) -> None:
        """An account that failed during a request: shown among the recent
        errors, but not a failed request (a fail-over may still answer)."""
        self._recent(f"account {identifier}: {message}", None, "")

    def _recent(self, message: str, status: int | None, path: str) -> None:
        self.recent_errors.appendleft({"time": time.time(), "status": status, "path": path,
                                       "message": message[:300]})

    def snapshot(self) -> dict:
        return {"requests_total": self.requests_total, "inflight": self.inflight,
                "errors_total": self.errors_total, "recent_errors": list(self.recent_errors),
                "uptime_seconds": round(time.time() - self.started_at, 1)}
