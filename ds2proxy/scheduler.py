"""The account pool: leases, per-account and global in-flight limits, a
bounded FIFO wait queue, and 429 when full.

Every request that uses a managed account holds exactly one :class:`Lease`
while it talks to the upstream. Leases are released in ``finally`` blocks by
their holders; :meth:`Lease.release` is idempotent so a double release on an
error path can never drive a counter negative. Limits are hot-reloadable:
:meth:`AccountPool.configure` swaps them in without touching leases in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from .config import AccountConfig, RuntimeSettings, normalise_mobile
from .errors import InvalidRequest, ProxyError, RateLimited, brief

TARGET_HEADER = "X-Ds2-Target-Account"

log = logging.getLogger("ds2proxy.scheduler")


@dataclass(slots=True)
class AccountState:
    """Runtime state of one managed account (the config holds the credentials)."""

    config: AccountConfig
    token: str = ""
    token_obtained_at: float = 0.0
    inflight: int = 0
    last_error: str = ""
    last_used: float = 0.0
    login_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def identifier(self) -> str:
        return self.config.identifier


@dataclass(frozen=True, slots=True)
class Limits:
    per_account: int
    queue: int
    global_inflight: int

    @classmethod
    def from_runtime(cls, runtime: RuntimeSettings, accounts: int) -> Limits:
        capacity = max(accounts, 1) * runtime.account_max_inflight
        queue = capacity if runtime.account_max_queue is None else runtime.account_max_queue
        glob = runtime.global_max_inflight or capacity
        return cls(runtime.account_max_inflight, queue, glob)


class Lease:
    """One slot on one account; release exactly once (extra calls are no-ops)."""

    __slots__ = ("account", "_pool", "_released")

    def __init__(self, pool: AccountPool, account: AccountState) -> None:
        self._pool = pool
        self.account = account
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self.account)


class AccountPool:
    def __init__(self, accounts: tuple[AccountConfig, ...], runtime: RuntimeSettings) -> None:
        self._accounts: dict[str, AccountState] = {}
        self._order: deque[str] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._inflight = 0
        self._queue_timeout = runtime.queue_timeout_seconds
        self.limits = Limits.from_runtime(runtime, len(accounts))
        self.configure(accounts, runtime)

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
                state.config = acc
            fresh[acc.identifier] = state
        self._accounts = fresh
        self._order = deque(i for i in self._order if i in fresh)
        self._order.extend(i for i in fresh if i not in self._order)
        self.limits = Limits.from_runtime(runtime, len(accounts))
        self._queue_timeout = runtime.queue_timeout_seconds
        self._wake_all()

    # -- leasing -----------------------------------------------------------

    def find(self, identifier: str) -> AccountState | None:
        key = identifier.strip()
        if key in self._accounts:
            return self._accounts[key]
        mobile = normalise_mobile(key)
        return self._accounts.get(mobile) if mobile else None

    def accounts(self) -> list[AccountState]:
        return list(self._accounts.values())

    async def acquire(self, *, target: str | None = None, exclude: frozenset[str] = frozenset()
                      ) -> Lease:
        """Lease a free account, waiting in the FIFO queue when all are busy.

        Raises RateLimited (429) when the queue is full or the wait times
        out; 503 with no accounts at all, 400 for a target that is not one. A cancelled waiter leaves the queue.
        """
        if not self._accounts:
            # Not a rate limit: waiting does not help, and SDKs retry 429s quietly.
            raise ProxyError("this server has no DeepSeek accounts configured; add one on "
                             "the dashboard's accounts page", status=503,
                             code="no_accounts_configured")
        pinned = None
        if target:
            pinned = self.find(target)
            if pinned is None:
                raise InvalidRequest(f"{TARGET_HEADER} names no configured account: "
                                     f"{brief(target)!r}", param=TARGET_HEADER,
                                     code="unknown_target_account")
        deadline = time.monotonic() + self._queue_timeout
        queued = False
        while True:
            state = self._pick(pinned, exclude)
            if state is not None:
                return self._grant(state)
            if not self._candidates(pinned, exclude):
                raise RateLimited("no untried account is available", retry_after=5)
            if not queued and len(self._waiters) >= self.limits.queue:
                raise RateLimited("all accounts are busy and the wait queue is full",
                                  retry_after=self._retry_after())
            queued = True
            await self._wait(deadline)

    def _candidates(self, pinned: AccountState | None, exclude: frozenset[str]) -> list[str]:
        if pinned is not None:
            return [pinned.identifier]
        return [i for i in self._order if i not in exclude]

    def _pick(self, pinned: AccountState | None, exclude: frozenset[str]) -> AccountState | None:
        if self._inflight >= self.limits.global_inflight:
            return None
        if pinned is not None:
            return pinned if pinned.inflight < self.limits.per_account else None
        ids = self._candidates(None, exclude)
        # Accounts that already hold a token go first (no login on the hot path).
        for want_token in (True, False):
            for ident in ids:
                state = self._accounts[ident]
                if bool(state.token) == want_token and state.inflight < self.limits.per_account:
                    return state
        return None

    def _grant(self, state: AccountState) -> Lease:
        state.inflight += 1
        state.last_used = time.time()
        self._inflight += 1
        # Round-robin: the chosen account moves to the back.
        self._order.remove(state.identifier)
        self._order.append(state.identifier)
        return Lease(self, state)

    async def _wait(self, deadline: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise RateLimited("timed out waiting for a free account",
                              retry_after=self._retry_after()) from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Woken, then cancelled before taking the slot: pass it on.
                self._wake_one()
            raise
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    def _release(self, state: AccountState) -> None:
        state.inflight = max(0, state.inflight - 1)
        self._inflight = max(0, self._inflight - 1)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)

    def _retry_after(self) -> int:
        return max(1, min(30, len(self._waiters) // max(1, self.limits.global_inflight) + 1))

    # -- status ------------------------------------------------------------

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def status(self) -> dict:
        busy = [s.identifier for s in self._accounts.values() if s.inflight]
        free = [s.identifier for s in self._accounts.values()
                if s.inflight < self.limits.per_account]
        total = len(self._accounts)
        return {
            "available": len(free),
            "in_use": self._inflight,
            "total": total,
            "available_accounts": free,
            "in_use_accounts": busy,
            "max_inflight_per_account": self.limits.per_account,
            "global_max_inflight": self.limits.global_inflight,
            "max_queue_size": self.limits.queue,
            "waiting": len(self._waiters),
            "recommended_concurrency": min(self.limits.global_inflight,
                                           total * self.limits.per_account),
        }

