"""Per-key limits: requests per minute, tokens per day, concurrent requests.

Checked before any account, session or PoW is spent. Requests per minute is a
sliding 60-second window (``Retry-After`` says when the oldest request leaves
it); tokens per day reset at 00:00 UTC and are seeded from the state file at
start, so a restart does not hand out a fresh day. A turn is admitted while
the day's charged tokens plus the reservations of the key's turns in
progress are under the quota; it then reserves its estimate
(:func:`estimate_tokens`) until its real count is charged, so concurrent
turns cannot all spend the same last tokens. The clock is injectable so
tests can cross a reset without waiting for it.

Counts are kept under a key's :attr:`~ds2proxy.keyring.KeyConfig.ref` (from
its secret), not its name: a key renamed keeps its window, its day's tokens
and its requests in flight, and a new key given an old name starts afresh.
The methods that take a ``name`` take that ref.

The counts live in :class:`ds2proxy.state.counters.MemoryCounters`. With a
shared state store (``shared``), :meth:`KeyLimiter.admit_shared` counts the
request in the cluster-wide window before the handler runs, tokens are
added to the cluster's daily total (in the background, the tokens of every
request in the last ``TOKENS_GATHER_SECONDS`` in one call per key), and a
key's concurrent requests take cluster-wide slots (a Redis outage is a 503,
never a slot left behind). Either way a request that may run a turn, of a
key with both an rpm and a concurrent limit, is counted in its window in
the same step as its slot is taken: one refused for the slot spends none
of the key's rpm.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from .canonical import ChatRequest, ReasoningPart, TextPart, ToolCall, ToolResult
from .errors import ProxyError, RateLimited
from .keyring import KeyConfig
from .state.counters import DAY, WINDOW, KeyCounters, MemoryCounters, day_of

__all__ = ["DAY", "WINDOW", "KeyLimiter", "day_of", "estimate_tokens"]

log = logging.getLogger("ds2proxy.limits")

TOKENS_GATHER_SECONDS = 0.05

# A key this request must still be counted against in its window (the shared
# one with a shared store), and
# whether only its rpm is left (its day's tokens are read already): one the
# request did not send (an implied key, known once a handler authenticated),
# or one whose rpm is counted with its concurrent slot in one call when the
# request's turn takes the slot. Each request's handler runs in its own task,
# so its own copy.
_OWED: contextvars.ContextVar[tuple[KeyConfig, bool] | None] = contextvars.ContextVar(
    "ds2proxy_owed_key", default=None)


def estimate_tokens(chat: ChatRequest) -> int:
    """What a turn will surely cost, cheaply: its prompt text at four
    characters a token (DeepSeek's tokenizer gives more for most text). Its
    output is not reserved: a ``max_tokens`` is a cap, not a cost, and
    agents send caps as large as a small quota."""
    chars = 0
    for message in chat.messages:
        for part in message.parts:
            if isinstance(part, (TextPart, ReasoningPart)):
                chars += len(part.text)
            elif isinstance(part, ToolResult):
                chars += len(part.content)
            elif isinstance(part, ToolCall):
                chars += len(part.name) + len(str(part.arguments))
    return chars // 4


def _over_rpm(key: KeyConfig, wait: float) -> RateLimited:
    seconds = max(1, math.ceil(wait))
    return RateLimited(f"API key '{key.name}' exceeded its limit of {key.limits.rpm} requests "
                       f"per minute; retry in {seconds} s", retry_after=seconds,
                       code="key_rate_limit")


def _over_concurrent(key: KeyConfig) -> RateLimited:
    return RateLimited(f"API key '{key.name}' already has {key.limits.concurrent} requests "
                       "in progress, its concurrency limit", retry_after=1,
                       code="key_concurrency_limit")


class KeyLimiter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.counts = MemoryCounters(lambda: self.clock())
        self.shared: KeyCounters | None = None
        self._active: dict[str, int] = {}
        self._sender: asyncio.Task[None] | None = None
        self._send_now = asyncio.Event()  # a flush waits: send without gathering
        self._owed: dict[str, int] = {}  # tokens the shared store has not taken yet
        self._reserved: dict[str, int] = {}  # tokens held by this instance's turns in progress

    # -- requests per minute -----------------------------------------------------------

    def admit(self, key: KeyConfig, *, defer: bool = False) -> None:
        """Count one request against the key's per-minute limit, or raise 429.
        ``defer`` (a request that may run a turn): a key with a concurrent
        limit too is counted when its turn takes a slot, in the same step
        (:meth:`hold`), as :meth:`admit_shared` does on a shared store."""
        if key.limits.rpm and not self._count_with_slot(key, defer):
            self._hit_local(key)

    @staticmethod
    def _count_with_slot(key: KeyConfig, defer: bool) -> bool:
        """Whether the request's rpm is left for its turn's slot to count
        (noted on the request); only a key with a concurrent limit has one."""
        if defer and key.limits.concurrent:
            _OWED.set((key, True))
            return True
        return False

    def _hit_local(self, key: KeyConfig) -> None:
        wait = self.counts.hit_now(key.ref, key.limits.rpm)
        if wait:
            raise _over_rpm(key, wait)

    async def admit_shared(self, key: KeyConfig, *, defer: bool = False) -> None:
        """The cluster-wide per-minute check and today's cluster-wide tokens
        (shared store only; the local window mirrors what this instance
        admitted). ``defer``: a key with a concurrent limit too is counted in
        its window when its turn takes a slot, both in one atomic call
        (:meth:`hold`); other requests by the time they end (:meth:`settle`)."""
        if self.shared is None:
            return
        if key.limits.rpm and not self._count_with_slot(key, defer):
            await self._hit_shared(key)
        if key.limits.tokens_per_day:
            self.counts.seed_tokens(key.ref, await self.shared.tokens(key.ref))

    async def _hit_shared(self, key: KeyConfig) -> None:
        """The key's rpm in the shared window (this instance's without one)."""
        if self.shared is None:
            self._hit_local(key)
            return
        wait = await self.shared.hit(key.ref, key.limits.rpm)
        if wait:
            raise _over_rpm(key, wait)
        self.counts.hit_now(key.ref, 1 << 30)

    def owe(self, key: KeyConfig) -> None:
        """Count ``key`` in the shared window at this request's next :meth:`settle`
        (``authenticate`` is synchronous; the shared check is not)."""
        _OWED.set((key, False))

    async def settle(self, *, final: bool = False) -> None:
        """The owed shared check, once per request (429 over the limit); an
        rpm left to be counted with a slot waits for :meth:`hold` unless
        ``final`` (the request takes no slot)."""
        owed = _OWED.get()
        if owed is None:
            return
        key, rpm_only = owed
        if rpm_only and not final:
            return
        _OWED.set(None)
        if rpm_only:
            await self._hit_shared(key)
        else:
            await self.admit_shared(key, defer=not final)

    def settle_late(self) -> None:
        """The request ended without a slot or a check: its owed rpm is
        counted now (in the background; the answer is out)."""
        owed, shared = _OWED.get(), self.shared
        if owed is not None:
            _OWED.set(None)
            key = owed[0]
            if shared is None:
                self.counts.hit_now(key.ref, key.limits.rpm)
                return
            task = asyncio.get_running_loop().create_task(shared.hit(key.ref, key.limits.rpm))
            task.add_done_callback(_quiet)

    def requests_last_minute(self, name: str) -> int:
        return self.counts.count_now(name)

    # -- tokens per day ------------------------------------------------------------------

    def tokens_today(self, name: str) -> int:
        return self.counts.tokens_now(name)

    def seed_tokens(self, name: str, used: int) -> None:
        self.counts.seed_tokens(name, used)

    async def refresh_tokens(self, names: Iterable[str]) -> None:
        """Today's cluster-wide tokens of ``names`` into this instance's view
        (shared store only), for the admin's figures: an instance that served
        none of a key's requests would otherwise show 0. Redis unreachable:
        the figures stay as they were."""
        shared = self.shared
        if shared is None:
            return
        for name in names:
            try:
                total = await shared.tokens(name)
            except ProxyError:
                return
            self.counts.seed_tokens(name, total + self._owed.get(name, 0))

    def add_tokens(self, name: str, tokens: int) -> None:
        if tokens <= 0:
            return
        self.counts.add_tokens_now(name, tokens)
        if self.shared is not None:
            self._owed[name] = self._owed.get(name, 0) + tokens
            if self._sender is None or self._sender.done():
                self._sender = asyncio.get_running_loop().create_task(self._send_tokens())

    async def _send_tokens(self) -> None:
        """Add what is owed to the cluster's totals, one call per key for every
        request of a gathering pause; what Redis refused stays owed and goes
        with the key's next tokens (logged, never dropped silently)."""
        shared = self.shared
        assert shared is not None  # only a shared store owes tokens
        refused: dict[str, int] = {}
        while self._owed:  # tokens added meanwhile wait for the next pause
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TOKENS_GATHER_SECONDS):
                    await self._send_now.wait()
            owed, self._owed = self._owed, {}
            for name, tokens in owed.items():
                try:
                    total = await shared.add_tokens(name, tokens)
                except ProxyError as exc:
                    refused[name] = refused.get(name, 0) + tokens
                    log.warning("%d tokens of key %s wait to be added to the shared total: "
                                "%s", refused[name], name, exc.message)
                    continue
                # Tokens counted here but not in the total yet stay counted.
                self.counts.seed_tokens(name, total + self._owed.get(name, 0)
                                        + refused.get(name, 0))
        for name, tokens in refused.items():
            self._owed[name] = self._owed.get(name, 0) + tokens

    async def flush(self) -> None:
        """Send the owed tokens now (one try: what fails stays owed, logged)."""
        if self._sender is not None and not self._sender.done():
            self._send_now.set()
            await self._sender
            self._send_now.clear()

    def check_tokens(self, key: KeyConfig) -> None:
        """429 when the key's day is used up (``Retry-After``: the reset at
        00:00 UTC), or spoken for by the reservations of its turns in
        progress (``Retry-After`` 1 s: they settle at their real counts)."""
        limit = key.limits.tokens_per_day
        if not limit:
            return
        used = self.tokens_today(key.ref)
        if used >= limit:
            now = self.clock()
            wait = max(1, math.ceil((day_of(now) + 1) * DAY - now))
            raise RateLimited(f"API key '{key.name}' used its {limit} tokens for today "
                              f"(UTC); the quota resets in {wait} s", retry_after=wait,
                              code="key_token_quota")
        if used + self.reserved(key.ref) >= limit:
            raise RateLimited(f"API key '{key.name}' has the rest of its {limit} tokens for "
                              "today reserved by its requests in progress", retry_after=1,
                              code="key_token_quota")

    def reserved(self, name: str) -> int:
        return self._reserved.get(name, 0)

    def reserve(self, key: KeyConfig, estimate: int) -> int:
        """Hold ``estimate`` tokens (at least 1, at most the quota) of the key's
        day for a turn just admitted, so turns running side by side cannot
        each spend the same last tokens; what was held (0 without a quota)."""
        limit = key.limits.tokens_per_day
        if not limit:
            return 0
        held = min(max(1, estimate), limit)
        self._reserved[key.ref] = self.reserved(key.ref) + held
        return held

    def release(self, name: str, held: int) -> None:
        """Give back a reservation (when its turn's real count is charged)."""
        if held > 0:
            left = self.reserved(name) - held
            if left > 0:
                self._reserved[name] = left
            else:
                self._reserved.pop(name, None)

    # -- concurrency ---------------------------------------------------------------------

    def active(self, name: str) -> int:
        return self._active.get(name, 0)

    @asynccontextmanager
    async def hold(self, key: KeyConfig) -> AsyncIterator[None]:
        """One concurrent slot for the key's turn (the cluster's with a shared
        store), or 429; released on every way out, cancellation included."""
        limit = key.limits.concurrent
        slot: str | None = None
        shared = self.shared  # the store the slot was taken from gets it back
        if limit and shared is not None:
            slot = await self._take_slot(shared, key)
            if slot is None:
                raise _over_concurrent(key)
        elif limit:
            owed = self._owed_rpm(key)
            if self.active(key.ref) >= limit:
                raise _over_concurrent(key)  # its owed rpm is not spent
            if owed:  # synchronous with the slot below: both or neither
                self._hit_local(key)
        self._active[key.ref] = self.active(key.ref) + 1
        try:
            yield
        finally:
            self._active[key.ref] = max(0, self.active(key.ref) - 1)
            if slot is not None and shared is not None:
                shared.give_slot(key.ref, slot)

    async def _take_slot(self, shared: KeyCounters, key: KeyConfig) -> str | None:
        """A shared slot; with the request's rpm still owed, counted in the
        window in the same call (neither is spent when the other refuses)."""
        if not self._owed_rpm(key):
            return await shared.take_slot(key.ref, key.limits.concurrent)
        wait, slot = await shared.hit_and_take_slot(key.ref, key.limits.rpm,
                                                    key.limits.concurrent)
        if wait:
            raise _over_rpm(key, wait)
        if slot is not None:
            self.counts.hit_now(key.ref, 1 << 30)
        return slot

    @staticmethod
    def _owed_rpm(key: KeyConfig) -> bool:
        """Whether this request's rpm is owed to ``key``'s slot (taken off: the
        slot's step counts it, or spends none of it when refused)."""
        owed = _OWED.get()
        if owed is None or not owed[1] or owed[0].ref != key.ref:
            return False
        _OWED.set(None)
        return True


def _quiet(task: asyncio.Task[float]) -> None:
    """A late count that found Redis gone is only logged."""
    if not task.cancelled() and task.exception() is not None:
        log.info("a request's late rpm count was not sent: %s", task.exception())
