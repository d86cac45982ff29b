"""Per-account health: cooldowns with exponential backoff and jitter, a
half-open trial after each cooldown, login backoff, operator overrides.

The account pool owns one tracker and asks it which accounts may serve; the
turn pipeline and the token keeper tell it what happened. Every transition
is logged once with the account and the reason, and every change is handed
to the state store (which writes off the event loop).
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable

from ..state import StateStore
from .classify import Failure
from .record import COOLING, DISABLED, HEALTHY, LOGIN_FAILING, AccountHealth
from .settings import KINDS, HealthSettings

log = logging.getLogger("ds2proxy.health")

NAMESPACE = "account_health"


class HealthTracker:
    def __init__(self, settings: HealthSettings | None = None, store: StateStore | None = None,
                 *, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.settings = settings or HealthSettings()
        self._store = store
        self._clock = clock
        self._rng = rng or random.Random()
        self._records: dict[str, AccountHealth] = {}
        self._troubled: dict[str, None] = {}  # not healthy: status reads count only these
        self._counter = uuid.uuid4().hex[:8]  # this instance's entry in today's counts
        self._listeners: list[Callable[[], None]] = []
        # The configured accounts (None until the pool names them): a turn
        # still running on a deleted account gives no verdict on it.
        self._configured: set[str] | None = None

    # -- setup ------------------------------------------------------------------

    def load(self, saved: dict[str, dict]) -> None:
        """Adopt records saved by a previous run (cooling accounts stay cooling),
        or the shared ones again when Redis is back after an outage: a record
        changed here since (its write still queued) is newer and is kept."""
        for identifier, data in saved.items():
            self.adopt(identifier, data)

    def adopt(self, identifier: str, data: dict | None) -> None:
        """A change another instance made (shared state): take its record,
        keep this instance's own trial flag, and wake waiting requests. A
        copy older than this instance's last state change (written before
        that change reached its writer) does not undo it: the newer record
        is written back, so every instance converges on the newest state."""
        before = self._records.get(identifier)
        if data is None:
            self._records.pop(identifier, None)
            self._troubled.pop(identifier, None)
            return
        record = AccountHealth.from_dict(data)
        if before is not None and before.changed > record.changed:
            before.merge_counts(record)
            self._save(identifier, before)
            return
        record.trial = before.trial if before is not None else False
        self._records[identifier] = record
        self._index(identifier, record)
        if before is not None and record.merge_counts(before):
            self._save(identifier, record)  # the copy lacked requests counted here
        if before is None or (before.state, before.until) != (record.state, record.until):
            self._notify()  # a request count alone frees nothing: no wake-up

    def configure(self, settings: HealthSettings) -> None:
        """New settings apply at once: a lowered cap shrinks running cooldowns
        of its kind. Any other change (every config write comes here, a
        login's new token too) leaves them, an upstream's longer
        Retry-After included."""
        before, self.settings = self.settings, settings
        for ident, rec in self._records.items():
            if rec.state in (COOLING, LOGIN_FAILING) and rec.kind in KINDS:
                cap = settings.cooldown.of(rec.kind).cap
                if cap >= before.cooldown.of(rec.kind).cap:
                    continue
                if rec.until > rec.since + cap:
                    rec.until, rec.changed = rec.since + cap, self._clock()
                    self._save(ident, rec)
        self._notify()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Called after a change that may let a waiting request through."""
        self._listeners.append(listener)

    def forget_except(self, identifiers: Iterable[str]) -> None:
        keep = self._configured = set(identifiers)
        for ident in [i for i in self._records if i not in keep]:
            del self._records[ident]
            self._troubled.pop(ident, None)
            if self._store is not None:
                self._store.put(NAMESPACE, ident, None)

    # -- questions the pool asks ----------------------------------------------

    def record(self, identifier: str) -> AccountHealth:
        rec = self._records.get(identifier)
        if rec is None:
            rec = self._records[identifier] = AccountHealth()
        return rec

    def now(self) -> float:
        return self._clock()

    def state(self, identifier: str) -> str:
        return self.record(identifier).state

    def eligible(self, identifier: str) -> bool:
        """Healthy, or past its cooldown with no trial in flight (half-open)."""
        rec = self.record(identifier)
        if rec.state == HEALTHY or (not self.settings.enabled and rec.state != DISABLED):
            return True
        if rec.state == DISABLED:
            return False
        return not rec.trial and self._clock() >= rec.until

    def in_trial(self, identifier: str) -> bool:
        return self.record(identifier).trial

    def seconds_until_eligible(self, identifiers: Iterable[str]) -> int | None:
        """Seconds to the earliest recovery among cooling/login-failing accounts."""
        now = self._clock()
        waits = [self._records[i].until - now for i in identifiers
                 if i in self._records and self._records[i].state in (COOLING, LOGIN_FAILING)]
        return max(1, math.ceil(min(waits))) if waits else None

    # -- what happened -----------------------------------------------------------

    def granted(self, identifier: str) -> None:
        rec = self.record(identifier)
        rec.count_request(self._clock(), self._counter)
        if rec.state in (COOLING, LOGIN_FAILING) and self.settings.enabled:
            rec.trial = True
            log.info("account %s: cooldown over, letting one trial request through", identifier)
        self._save(identifier, rec)

    def released(self, identifier: str) -> None:
        """A lease ended; a trial that got no verdict may be tried again."""
        rec = self._records.get(identifier)
        if rec is not None and rec.trial:
            rec.trial = False

    def succeeded(self, identifier: str) -> None:
        if self._deleted(identifier):
            return
        rec = self.record(identifier)
        rec.last_success = self._clock()
        rec.trial = False
        if rec.state in (COOLING, LOGIN_FAILING):
            log.warning("account %s: healthy again after %s", identifier, rec.reason)
            rec.state, rec.reason, rec.kind, rec.until = HEALTHY, "", "", 0.0
            rec.changed = self._clock()
        rec.strikes.clear()
        self._save(identifier, rec)
        self._notify()

    def failed(self, identifier: str, failure: Failure, *, started: float | None = None
               ) -> None:
        """Cool the account down for ``failure`` (backoff grows per kind).
        A request ``started`` before the running cooldown of that kind began
        failed in the same burst: it adds no strike (at most its Retry-After)."""
        if self._deleted(identifier):
            return
        rec = self.record(identifier)
        now = self._clock()
        rec.trial = False
        rec.last_failure, rec.last_failure_reason = now, failure.reason[:300]
        if not self.settings.enabled or rec.state == DISABLED:
            self._save(identifier, rec)
            return
        if (started is not None and started < rec.since and rec.kind == failure.kind
                and rec.state in (COOLING, LOGIN_FAILING)):
            if now + failure.retry_after > rec.until:
                rec.until, rec.changed = now + failure.retry_after, now
            self._save(identifier, rec)
            return
        strikes = rec.strikes[failure.kind] = rec.strikes.get(failure.kind, 0) + 1
        seconds = self._jittered(self.settings.cooldown_for(failure.kind, strikes))
        seconds = max(seconds, failure.retry_after)
        if rec.state in (COOLING, LOGIN_FAILING) and rec.until >= now + seconds:
            # A shorter failure of another kind (a request that was already
            # running) must not cut a longer cooldown, a Retry-After above all.
            self._save(identifier, rec)
            return
        new_state = LOGIN_FAILING if failure.kind == "login" else COOLING
        rec.state, rec.reason, rec.kind = new_state, failure.reason[:300], failure.kind
        rec.since, rec.until, rec.changed = now, now + seconds, now
        log.warning("account %s: %s for %.0fs (failure %d of kind %s): %s", identifier,
                    new_state, seconds, strikes, failure.kind, failure.reason)
        self._save(identifier, rec)
        self._notify()

    def login_failed(self, identifier: str, reason: str, retry_after: float = 0.0) -> None:
        self.failed(identifier, Failure("login", reason, retry_after))

    def login_succeeded(self, identifier: str) -> None:
        """A login worked: ends a login failure, not a cooldown of another kind."""
        if self._deleted(identifier):
            return
        rec = self.record(identifier)
        rec.strikes.pop("login", None)
        if rec.state == LOGIN_FAILING:
            # Healthy again, but the backoff other kinds earned stands: no
            # request has succeeded yet (a rate limit next doubles on).
            log.warning("account %s: logged in again after %s", identifier, rec.reason)
            rec.state, rec.reason, rec.kind, rec.until, rec.trial = HEALTHY, "", "", 0.0, False
            rec.changed = self._clock()
            self._notify()
        self._save(identifier, rec)

    def login_allowed(self, identifier: str) -> bool:
        """No login storm: a failing login waits out its backoff."""
        rec = self.record(identifier)
        return rec.state != LOGIN_FAILING or not self.settings.enabled \
            or self._clock() >= rec.until

    # -- operator ----------------------------------------------------------------

    def disable(self, identifier: str, reason: str = "disabled by the operator") -> None:
        rec = self.record(identifier)
        rec.state, rec.reason, rec.kind, rec.until, rec.trial = DISABLED, reason, "", 0.0, False
        rec.changed = self._clock()
        log.warning("account %s: disabled (%s)", identifier, reason)
        self._save(identifier, rec)
        self._notify()

    def route_changed(self, identifier: str) -> None:
        """The account's outbound proxy changed: a cooldown or login backoff
        earned through the old route says nothing of the new one."""
        rec = self.record(identifier)
        if rec.state not in (COOLING, LOGIN_FAILING):
            return
        log.warning("account %s: proxy changed, %s forgotten", identifier, rec.state)
        rec.state, rec.reason, rec.kind, rec.until, rec.trial = HEALTHY, "", "", 0.0, False
        rec.changed = self._clock()
        rec.strikes.clear()
        self._save(identifier, rec)
        self._notify()

    def password_changed(self, identifier: str) -> None:
        """The account's password changed: a login backoff the old one earned
        says nothing of the new one (a cooldown of another kind stays)."""
        rec = self.record(identifier)
        rec.strikes.pop("login", None)
        if rec.state != LOGIN_FAILING:
            return
        log.warning("account %s: password changed, login backoff forgotten", identifier)
        rec.state, rec.reason, rec.kind, rec.until, rec.trial = HEALTHY, "", "", 0.0, False
        rec.changed = self._clock()
        self._save(identifier, rec)
        self._notify()

    def reset(self, identifier: str) -> None:
        """Back to healthy at once (also what enabling a disabled account does)."""
        rec = self.record(identifier)
        previous = rec.state
        rec.state, rec.reason, rec.kind, rec.until, rec.trial = HEALTHY, "", "", 0.0, False
        rec.changed = self._clock()
        rec.strikes.clear()
        log.warning("account %s: reset to healthy by the operator (was %s)", identifier, previous)
        self._save(identifier, rec)
        self._notify()

    # -- views ---------------------------------------------------------------------

    def view(self, identifier: str) -> dict:
        """Never adds a record: admin views are built in a worker thread."""
        rec = self._records.get(identifier)
        return (rec if rec is not None else AccountHealth()).view(self._clock())

    def troubled(self) -> list[str]:
        """Accounts whose state is not healthy (every other one is)."""
        return list(self._troubled)

    def counts(self, identifiers: Iterable[str]) -> dict[str, int]:
        out = {HEALTHY: 0, COOLING: 0, LOGIN_FAILING: 0, DISABLED: 0}
        for ident in identifiers:
            out[self.record(ident).state] += 1
        return out

    # -- internals -------------------------------------------------------------------

    def _deleted(self, identifier: str) -> bool:
        """Removed from the configuration while a request on it ran: its
        record is gone and must not come back (nor reach the state store)."""
        return self._configured is not None and identifier not in self._configured

    def _jittered(self, seconds: float) -> float:
        spread = self.settings.jitter
        return seconds * (1 + self._rng.uniform(-spread, spread)) if spread else seconds

    def _save(self, identifier: str, rec: AccountHealth) -> None:
        self._index(identifier, rec)
        if self._store is not None:
            self._store.put(NAMESPACE, identifier, rec.to_dict())

    def _index(self, identifier: str, rec: AccountHealth) -> None:
        """Every state change is saved: keep the unhealthy ones listed."""
        if rec.state == HEALTHY or self._records.get(identifier) is not rec:
            self._troubled.pop(identifier, None)
        else:
            self._troubled[identifier] = None

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()
