"""The account pool: leases, per-account and global in-flight limits, a
bounded FIFO wait queue, account health and pacing, and 429 when full.

With a :class:`SharedLeases` store (Redis), the in-flight limits count every
instance's leases and a release anywhere wakes waiters here.

Every request that uses a managed account holds exactly one :class:`Lease`
while it talks to the upstream. Leases are released in ``finally`` blocks by
their holders; :meth:`Lease.release` is idempotent so a double release on an
error path can never drive a counter negative. Limits are hot-reloadable:
:meth:`AccountPool.configure` swaps them in without touching leases in flight.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from .account_state import AccountState, Lease, Limits, SharedLeases
from .config import AccountConfig, RuntimeSettings, normalise_mobile
from .errors import (
    ACCOUNT_UNUSABLE,
    InvalidRequest,
    LoginFailed,
    NoAccountAvailable,
    ProxyError,
    RateLimited,
)
from .health import DISABLED, LOGIN_FAILING, HealthSettings, HealthTracker, Pacer
from .wait_queue import Waiter, WaitQueue

TARGET_HEADER = "X-Ds2-Target-Account"

log = logging.getLogger("ds2proxy.scheduler")


class AccountPool:
    def __init__(self, accounts: tuple[AccountConfig, ...], runtime: RuntimeSettings,
                 health: HealthTracker | None = None, pacer: Pacer | None = None) -> None:
        self.health = health or HealthTracker()
        self.pacer = pacer or Pacer(self.health.settings.pacing)
        self.health.on_change(self._wake_all)
        self._accounts: dict[str, AccountState] = {}
        self._lru: dict[str, None] = {}
        self._busy: dict[str, AccountState] = {}  # holding a lease here (for status reads)
        self._waiters = WaitQueue()
        self._closed: Callable[[], ProxyError] | None = None  # set by close_queue
        self._inflight = 0
        self._queue_timeout = runtime.queue_timeout_seconds
        self.limits = Limits.from_runtime(runtime, len(accounts))
        self.shared: SharedLeases | None = None
        self.configure(accounts, runtime)

    def share(self, leases: SharedLeases) -> None:
        """Count leases in a store shared by every instance (state.backend: redis)."""
        self.shared = leases
        leases.start(list(self._accounts), self._waiters.wake_tickets, self._wake_all)
        leases.configure(list(self._accounts), self._shared_limits())

    # -- configuration -----------------------------------------------------

    def configure(self, accounts: tuple[AccountConfig, ...], runtime: RuntimeSettings) -> None:
        """Apply a new account list and limits; in-flight leases keep running."""
        old = self._accounts
        fresh: dict[str, AccountState] = {}
        for acc in accounts:
            state = old.get(acc.identifier)
            if state is None:
                state = AccountState(config=acc, token=acc.token)
            else:
                if acc.token and acc.token != state.config.token:
                    state.token, state.token_obtained_at = acc.token, 0.0
                if acc.proxy != state.config.proxy:
                    self.health.route_changed(acc.identifier)
                    state.last_error = ""
                if acc.password != state.config.password:
                    self.health.password_changed(acc.identifier)
                state.config = acc
            fresh[acc.identifier] = state
        self._accounts = fresh
        # Least recently used first; new accounts join at the end, in config order.
        self._lru = dict.fromkeys([*(i for i in self._lru if i in fresh),
                                   *(i for i in fresh if i not in self._lru)])
        self.health.forget_except(fresh)
        self.limits = Limits.from_runtime(runtime, len(accounts))
        self._queue_timeout = runtime.queue_timeout_seconds
        if self.shared is not None:
            self.shared.configure(list(fresh), self._shared_limits())
        self._wake_all()

    def _shared_limits(self) -> tuple[int, int]:
        return self.limits.per_account, self.limits.global_inflight

    def configure_health(self, settings: HealthSettings) -> None:
        """New health and pacing settings apply to the next decision."""
        self.health.configure(settings)
        self.pacer.configure(settings.pacing)
        self._wake_all()

    # -- leasing -----------------------------------------------------------

    def find(self, identifier: str) -> AccountState | None:
        key = identifier.strip()
        if key in self._accounts:
            return self._accounts[key]
        mobile = normalise_mobile(key)
        return self._accounts.get(mobile) if mobile else None

    def proxy_for_token(self, token: str) -> str:
        """The outbound proxy of the account holding ``token`` ("" if none)."""
        for state in self._accounts.values():
            if token and state.token == token:
                return state.config.proxy
        return ""

    def accounts(self) -> list[AccountState]:
        return list(self._accounts.values())

    async def acquire(self, *, target: str | None = None, exclude: frozenset[str] = frozenset()
                      ) -> Lease:
        """Lease a healthy, paced, free account, waiting in the FIFO queue when
        every servable one is busy or paced.

        Raises 429 when the queue is full, the wait times out or every account
        is cooling down (Retry-After: the earliest recovery); 502 when every
        account fails to log in; 503 when none can ever serve; 400 for a
        pinned account that is not configured. A cancelled waiter leaves the
        queue. With shared leases the line is the cluster's: the request holds
        a ticket from its first ask to its last (given back on every way out).
        """
        if not self._accounts:
            raise NoAccountAvailable("no upstream accounts are configured")
        deadline = time.monotonic() + self._queue_timeout
        me: Waiter | None = None  # this request's place in line, once it waits
        asker = self._waiters.expect(Waiter(None, exclude, self.shared.ticket())
                                     ) if self.shared else None
        woken = False
        try:
            while True:
                lease = await self._try_lease(target, exclude, me, asker)
                if lease is not None:
                    if me is not None:
                        self._pass_on(me)  # a slot may be left for the next in line
                    return lease
                if woken:
                    self._pass_on(me)  # what freed up was of no use to this request
                pinned = self._pinned(target)
                candidates = self._candidates(pinned, exclude)
                if not candidates:
                    raise RateLimited("no untried account is available", retry_after=5)
                wake_in = self._blocked(candidates)
                if me is None:
                    if len(self._waiters) >= self.limits.queue:
                        raise RateLimited("all accounts are busy and the wait queue is full",
                                          retry_after=self._retry_after(wake_in))
                    me = asker or Waiter(pinned, exclude)
                    me.pinned = pinned
                    self._waiters.join(me)
                if self.shared is not None and not self.shared.in_line(me.ticket):
                    # Not in the cluster's line (nothing was ready to ask for):
                    # nothing will name it, so it asks again after a while.
                    wake_in = min(wake_in or self.shared.recheck_seconds,
                                  self.shared.recheck_seconds)
                woken = await self._wait(me, deadline, wake_in)
        finally:
            for waiter in {me, asker} - {None}:
                self._waiters.leave(waiter)
            if asker is not None and self.shared is not None:
                self.shared.leave(asker.ticket)

    async def _try_lease(self, target: str | None, exclude: frozenset[str],
                         me: Waiter | None, asker: Waiter | None = None) -> Lease | None:
        """A lease now, or None; a free slot that a request ahead in line
        can take is left to it."""
        while True:
            if self._closed is not None:
                raise self._closed()
            # Looked up again after each wait: the account may have been deleted meanwhile.
            pinned = self._pinned(target)
            if me is not None:
                me.pinned = pinned
            if self.shared is None:
                state = self._pick(pinned, exclude)
                if state is None or self._waiters.owed(state, me):
                    return None
                return self._grant(state)
            assert asker is not None
            join = me is not None or len(self._waiters) < self.limits.queue
            granted = await self._pick_shared(pinned, exclude, asker.ticket, join)
            if granted is None:
                return None
            if await self._paced_everywhere(*granted):
                return self._grant(*granted)
            # Paced by another instance: the pacer now knows the wait; look again.

    def _pass_on(self, me: Waiter | None) -> None:
        """Wake the next in line behind ``me`` while a slot is free here."""
        if self.shared is None and self._pick(None, frozenset()) is not None:
            self._waiters.wake_one(after=me)

    def _pinned(self, target: str | None) -> AccountState | None:
        """The configured account ``target`` names (None without one); 400 if none."""
        if not target:
            return None
        pinned = self.find(target)
        if pinned is None:
            raise InvalidRequest(f"the account named in {TARGET_HEADER} is not configured",
                                 code="unknown_account")
        return pinned

    def _candidates(self, pinned: AccountState | None, exclude: frozenset[str]
                    ) -> list[AccountState]:
        """Pinned, else every untried account, least recently used first."""
        if pinned is not None:
            return [pinned]
        return [self._accounts[i] for i in self._lru if i not in exclude]

    def _usable(self, state: AccountState) -> bool:
        """Healthy (or due a trial), under its in-flight limit, and paced."""
        return (state.inflight < self.limits.per_account
                and self.health.eligible(state.identifier)
                and self.pacer.ready(state.identifier))

    def _pick(self, pinned: AccountState | None, exclude: frozenset[str]) -> AccountState | None:
        if self._inflight >= self.limits.global_inflight:
            return None
        # The least recently used usable account, so load spreads over every
        # eligible one; one that holds a token wins (no login on the hot path).
        first = None
        order = (pinned,) if pinned is not None else (
            self._accounts[i] for i in self._lru if i not in exclude)
        for state in order:
            if self._usable(state):
                if state.token:
                    return state
                first = first or state
        return first

    async def _pick_shared(self, pinned: AccountState | None, exclude: frozenset[str],
                           ticket: str, join: bool) -> tuple[AccountState, str] | None:
        """As :meth:`_pick`, but the in-flight counts are every instance's:
        the shared store takes the first account of this order with room
        left after the cluster's longer waiters (``ticket`` joins them on a
        refusal when ``join``). A ticket in line with nothing ready asks
        anyway, for nothing: it must not keep a claim it cannot use."""
        assert self.shared is not None
        order = [pinned] if pinned is not None else [
            self._accounts[i] for i in self._lru if i not in exclude]
        ready = [s for s in order if self.health.eligible(s.identifier)
                 and self.pacer.ready(s.identifier)]
        ready.sort(key=lambda s: not s.token)  # stable: token holders first, LRU kept
        if not ready and not self.shared.in_line(ticket):
            return None
        got = await self.shared.acquire([s.identifier for s in ready], self.limits.per_account,
                                        self.limits.global_inflight, ticket, join)
        if got is None or got[0] not in self._accounts:
            if got is not None:
                self.shared.release(*got)
            return None
        return self._accounts[got[0]], got[1]

    async def _paced_everywhere(self, state: AccountState, shared_id: str) -> bool:
        """The shared pacing gate's word on a start; the lease goes back on a no."""
        try:
            if await self.pacer.claim(state.identifier):
                return True
        except BaseException:
            self.shared.release(state.identifier, shared_id)
            raise
        self.shared.release(state.identifier, shared_id)
        return False

    def _blocked(self, candidates: list[AccountState]) -> float | None:
        """Why nothing could be leased: raise when waiting cannot help, else
        the seconds until a cooldown or a pacing gap ends (None: wait for a
        release)."""
        health = self.health
        servable = [s for s in candidates
                    if health.eligible(s.identifier) or health.in_trial(s.identifier)]
        ids = [s.identifier for s in candidates]
        if not servable:
            raise self._unservable(ids)
        waits = [self.pacer.ready_at(s.identifier) - self.pacer.now() for s in servable
                 if health.eligible(s.identifier) and s.inflight < self.limits.per_account]
        cooling = health.seconds_until_eligible(ids)
        if cooling is not None:
            waits.append(float(cooling))
        waits = [w for w in waits if w > 0]
        return min(waits) if waits else None

    def _unservable(self, ids: list[str]) -> ProxyError:
        states = {self.health.state(i) for i in ids}
        if states == {DISABLED}:
            return NoAccountAvailable("every upstream account is disabled by the operator")
        retry = self.health.seconds_until_eligible(ids) or 1
        if states <= {LOGIN_FAILING, DISABLED}:
            return LoginFailed(ACCOUNT_UNUSABLE, retry_after=retry,
                               detail=f"login failing on {', '.join(ids)}; next try in {retry}s")
        return RateLimited("every upstream account is cooling down after upstream errors",
                           retry_after=retry, code="accounts_cooling_down")

    def _grant(self, state: AccountState, shared_id: str = "") -> Lease:
        state.inflight += 1
        self._busy[state.identifier] = state
        self._lru.pop(state.identifier, None)
        self._lru[state.identifier] = None  # now the most recently used
        self._inflight += 1
        self.health.granted(state.identifier)
        self.pacer.started(state.identifier)
        return Lease(self, state, shared_id)

    async def _wait(self, me: Waiter, deadline: float, wake_in: float | None) -> bool:
        """Wait for a release, a health change or ``wake_in`` seconds (True
        when woken); 429 at the deadline."""
        left = deadline - time.monotonic()
        woken = left > 0 and await self._waiters.wait(
            me, left if wake_in is None else min(left, wake_in))
        if not woken and time.monotonic() >= deadline:
            raise RateLimited("timed out waiting for a free account",
                              retry_after=self._retry_after(wake_in))
        return woken

    def _release(self, state: AccountState, shared_id: str = "") -> None:
        if shared_id and self.shared is not None:
            self.shared.release(state.identifier, shared_id)
        state.inflight = max(0, state.inflight - 1)
        if not state.inflight and self._busy.get(state.identifier) is state:
            del self._busy[state.identifier]
        self._inflight = max(0, self._inflight - 1)
        self.health.released(state.identifier)
        if self.shared is None:  # shared: the store names the tickets to wake
            self._waiters.wake_one()

    def close_queue(self, error: Callable[[], ProxyError]) -> None:
        """The server is about to stop: no more leases, and every request
        waiting for one gets ``error()`` now rather than a cut connection."""
        self._closed = error
        self._wake_all()

    def _wake_all(self) -> None:
        self._waiters.wake_all()

    def _retry_after(self, wake_in: float | None = None) -> int:
        if wake_in is not None:
            return max(1, math.ceil(wake_in))
        return max(1, min(30, len(self._waiters) // max(1, self.limits.global_inflight) + 1))

    # -- status ------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """Leases held by this instance."""
        return self._inflight

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def size(self) -> int:
        return len(self._accounts)

    def __contains__(self, identifier: str) -> bool:
        return identifier in self._accounts

    def busy(self) -> list[AccountState]:
        """The configured accounts holding a lease here, without a walk of every account."""
        return [s for i, s in self._busy.items() if self._accounts.get(i) is s]

    def status(self) -> dict:
        """Queue status with the real capacity: only accounts that may serve
        now count, and the global limit caps the free slots."""
        accounts = list(self._accounts.values())
        busy = [s.identifier for s in accounts if s.inflight]
        global_left = max(0, self.limits.global_inflight - self._inflight)
        usable = [s for s in accounts if self._usable(s)] if global_left else []
        slots = sum(self.limits.per_account - s.inflight for s in usable)
        total = len(accounts)
        serving = [s for s in accounts if self.health.state(s.identifier) != DISABLED]
        return {
            "available": len(usable),
            "free_slots": min(slots, global_left),
            "in_use": self._inflight if self.shared is None else self.shared.total,
            "total": total,
            "available_accounts": [s.identifier for s in usable],
            "in_use_accounts": busy,
            "by_state": self.health.counts(s.identifier for s in accounts),
            "max_inflight_per_account": self.limits.per_account,
            "global_max_inflight": self.limits.global_inflight,
            "max_queue_size": self.limits.queue,
            "waiting": len(self._waiters),
            "recommended_concurrency": min(self.limits.global_inflight,
                                           len(serving) * self.limits.per_account),
        }
