"""How many accounts a turn may try, and for how long, before it gives up.

A turn that fails before any output moves to another managed account, at
most ``upstream.max_attempts`` accounts in all, and the whole phase before
the upstream's first output (logins, sessions, PoW, waiting for the first
token, on every account) shares one deadline,
``upstream.first_output_timeout_seconds``. When the turn gives up, the
caller gets what broke last, as a 502 (504 for a timeout), never a 429 that
would make an outage look like rate limiting.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import logging

from .auth import Caller
from .config import UpstreamSettings
from .errors import (
    LoginFailed,
    NoAccountAvailable,
    ProxyError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from .health import Failure
from .scheduler import AccountPool, Lease
from .upstream.credentials import Credentials, TokenKeeper

log = logging.getLogger("ds2proxy.failover")

T = TypeVar("T")


class Attempts:
    """The accounts one turn has tried, its attempt cap and its deadline."""

    def __init__(self, pool: AccountPool, settings: UpstreamSettings, *, pinned: bool) -> None:
        self._pool = pool
        self._cap = settings.max_attempts
        self._timeout = settings.first_output_timeout_seconds
        # An attempt silent this long when the deadline ends it has stalled.
        self._stall = min(settings.silence_timeout_seconds, self._timeout)
        self._pinned = pinned
        self._deadline: float | None = None
        # The deadline running over the current step (see within and heard).
        self._limit: asyncio.Timeout | None = None
        # The managed account waited on: its name, since when (loop clock), its lease's grant.
        self._current: tuple[str, float, float] | None = None
        self.tried: set[str] = set()
        self.count = 0
        self.last: UpstreamError | None = None

    def begin(self, lease: Lease | None) -> None:
        """An attempt starts (on ``lease``'s account, or pass-through without
        one); the first one starts the clock."""
        identifier = lease.account.identifier if lease is not None else "passthrough"
        self.count += 1
        self.tried.add(identifier)
        now = asyncio.get_running_loop().time()
        self._current = (identifier, now, lease.granted_at) if lease is not None else None
        self._start_clock()

    def _start_clock(self) -> float:
        """The deadline, started now unless it runs already: at the first
        attempt, or at a fail-over after the upstream was heard."""
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self._timeout
        return self._deadline

    def may_retry(self, exc: ProxyError, *, managed: bool) -> bool:
        """Record a failure; True when another account may be tried for it."""
        self._current = None  # the attempt is over (blamed, or not, by its caller)
        if isinstance(exc, UpstreamError):
            self.last = exc
        if not (managed and isinstance(exc, UpstreamError) and exc.retryable):
            return False
        if self._pinned or self.count >= self._cap:
            return False
        return any(a.identifier not in self.tried for a in self._pool.accounts())

    def final(self, exc: ProxyError) -> ProxyError:
        """The error the caller sees when the turn gives up on ``exc``."""
        if self.count <= 1 or not isinstance(exc, UpstreamError):
            return exc
        error = copy.copy(exc)
        error.message = (f"the upstream failed on {self.count} accounts; "
                         f"last failure: {exc.message}")
        error.args = (error.message,)
        return error

    async def within(self, step: Awaitable[T]) -> T:
        """Run ``step`` before the turn's first-output deadline, else a 504."""
        limit = self._limit = asyncio.timeout_at(self._start_clock())
        try:
            async with limit:
                return await step
        except TimeoutError:
            if not limit.expired():
                raise
            self._blame_stall()
            raise UpstreamTimeout(
                f"no output from the upstream within {self._timeout:g} s "
                f"(upstream.first_output_timeout_seconds) over {self.count} "
                f"account{'s' if self.count != 1 else ''}", retryable=False) from None
        finally:
            self._limit = None

    def heard(self) -> None:
        """The upstream's first output arrived: the deadline is over for the
        step reading it, though the client may see nothing yet (a tool call
        or a JSON answer is held until it is whole). A fail-over after this
        starts a fresh deadline, as the first attempt did."""
        limit, self._limit = self._limit, None
        if limit is not None and not limit.expired():
            limit.reschedule(None)
        self._deadline = None

    def _blame_stall(self) -> None:
        """The deadline ended an attempt: an account silent the whole stall
        time is cooled like one whose stream went silent (with equal
        timeouts, the default, the silence timeout never fires first). One
        that began late, after other attempts ate the time, is not blamed."""
        if self._current is None:
            return
        identifier, since, granted = self._current
        self._current = None
        silent = asyncio.get_running_loop().time() - since
        if silent >= self._stall:
            self._pool.health.failed(identifier, Failure(
                "upstream", f"no output from the upstream for {silent:.0f} s"), started=granted)

    async def until_heard(self, items: AsyncIterator[T], heard: Callable[[], bool]
                          ) -> AsyncIterator[T]:
        """``items``, each bounded by the deadline until ``heard()`` says the
        upstream's first output arrived (then read without a timer; the
        producer calls :meth:`heard` as it arrives, which ends the deadline
        of an item still being made)."""
        iterator = aiter(items)
        while not heard():
            try:
                item = await self.within(anext(iterator))
            except StopAsyncIteration:
                return
            yield item
        async for item in iterator:
            yield item


async def credentials_for(caller: Caller, pool: AccountPool, keeper: TokenKeeper,
                          attempts: Attempts) -> Credentials:
    """Credentials for the next attempt: the caller's own token, or a leased
    account this turn has not tried, logged in (a failed login moves on to
    another account within the attempt cap)."""
    if not caller.managed:
        attempts.begin(None)
        return Credentials(token=caller.credential)
    while True:
        lease = await _lease(caller, pool, attempts)
        attempts.begin(lease)
        try:
            token = await attempts.within(keeper.ensure(lease.account))
        except UpstreamError as exc:
            lease.release()
            if not attempts.may_retry(exc, managed=True):
                raise attempts.final(exc) from None
            log.warning("login failed for %s: %s", lease.account.identifier, exc.message)
            continue
        except BaseException:
            lease.release()
            raise
        return Credentials(token=token, lease=lease)


# What the pool answers when no untried account can take a fail-over: the
# untried ones are busy, cooling, failing to log in or disabled. None of it
# is what went wrong with this turn.
POOL_REFUSALS = (RateLimited, NoAccountAvailable, LoginFailed)


async def _lease(caller: Caller, pool: AccountPool, attempts: Attempts) -> Lease:
    """A lease on an account this turn has not tried. Waiting for one during
    a fail-over counts against the deadline, and a pool that cannot give one
    then reports the failure that caused the fail-over: not a 429, nor a 503
    saying every account is disabled when only the untried ones are."""
    acquire = pool.acquire(target=caller.target_account, exclude=frozenset(attempts.tried))
    last = attempts.last
    if last is None:
        return await acquire
    try:
        return await attempts.within(acquire)
    except POOL_REFUSALS:
        raise attempts.final(last) from None
