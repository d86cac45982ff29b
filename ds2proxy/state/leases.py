"""Account leases shared by every instance on one Redis.

Each account has a sorted set of its leases scored by expiry (ms, Redis's
own clock), and one more set holds every lease for the global limit. A
Lua script takes a lease in one round trip: it drops expired members, checks
the global and per-account counts, and adds the lease to the first account
of the caller's preference order with room. Releasing removes it and
publishes on ``leases:freed`` so a waiting request on any instance wakes
(only while some instance has requests waiting: a failed acquire marks its
instance as waiting, in the same step).

A lease lives ``lease_ttl_seconds`` unless renewed: every instance renews
the leases it holds every third of that (and reaps expired ones, announcing
the capacity it found), so the leases of an instance killed with -9 are
gone within ``lease_ttl_seconds`` and its waiters' peers are woken within a
third of that more. Releases go out in the background, every release
waiting at that moment in one call; one that cannot reach Redis is kept
and replayed when Redis is back (and would expire anyway), see
:mod:`ds2proxy.state.releases`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Callable

from .errors import StateUnavailable
from .redis_link import RedisLink
from .releases import Releases

log = logging.getLogger("ds2proxy.state")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Every script: KEYS[1] the global set, KEYS[2] the instances with waiting
# requests (scored by expiry: a release announces itself only while some
# instance waits, so a cluster that is not full sends no messages), then
# account sets.

# ARGV: lease, ttl ms, per-account limit, global limit, instance. Accounts in
# preference order. Returns the 1-based index of the account leased, 0
# (global full) or -1; on failure the instance is marked as waiting in the
# same step, so no release after it can go unannounced.
ACQUIRE = _NOW + """
local expiry = now + tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  local limit = tonumber(ARGV[3])
  for i = 3, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    if redis.call('ZCARD', KEYS[i]) < limit then
      redis.call('ZADD', KEYS[i], expiry, ARGV[1])
      redis.call('ZADD', KEYS[1], expiry, ARGV[1])
      return i - 2
    end
  end
  redis.call('ZADD', KEYS[2], expiry, ARGV[5])
  return -1
end
redis.call('ZADD', KEYS[2], expiry, ARGV[5])
return 0
"""

# ARGV: channel, sender, then (account index, lease) pairs: every release
# waiting to be sent, in one call. Accounts: those the leases may be on.
# Returns 1 or 0 per pair (whether that account still held the lease).
RELEASE = _NOW + """
local freed, n = {}, 0
for j = 3, #ARGV, 2 do
  local removed = redis.call('ZREM', KEYS[tonumber(ARGV[j]) + 2], ARGV[j + 1])
  redis.call('ZREM', KEYS[1], ARGV[j + 1])
  freed[#freed + 1] = removed
  n = n + removed
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if n > 0 and redis.call('ZCARD', KEYS[2]) > 0 then
  redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. n)
end
return freed
"""

# ARGV: ttl ms, channel, sender, waiting here (1/0), 'XX' or 'restore', then
# (account index, lease) pairs; accounts: every account. Renewal never
# resurrects a lease already gone (XX); 'restore' re-adds the leases in use
# here after Redis came back empty. Returns the global count, then each
# account's.
RENEW = _NOW + """
local reaped = 0
for i = 3, #KEYS do reaped = reaped + redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local expiry = now + tonumber(ARGV[1])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], expiry, ARGV[3]) end
for j = 6, #ARGV, 2 do
  if ARGV[5] == 'XX' then
    redis.call('ZADD', KEYS[tonumber(ARGV[j]) + 2], 'XX', expiry, ARGV[j + 1])
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[j + 1])
  else
    redis.call('ZADD', KEYS[tonumber(ARGV[j]) + 2], expiry, ARGV[j + 1])
    redis.call('ZADD', KEYS[1], expiry, ARGV[j + 1])
  end
end
if reaped > 0 then redis.call('PUBLISH', ARGV[2], '* ' .. reaped) end
local counts = {redis.call('ZCARD', KEYS[1])}
for i = 3, #KEYS do counts[#counts + 1] = redis.call('ZCARD', KEYS[i]) end
return counts
"""

Waker = Callable[[int], None]


class RedisLeases:
    """The shared half of the account pool (see :class:`ds2proxy.scheduler.AccountPool`)."""

    def __init__(self, link: RedisLink, ttl_seconds: int) -> None:
        self.link = link
        self.ttl_ms = ttl_seconds * 1000
        self.instance = uuid.uuid4().hex[:12]
        self.channel = link.channel("leases", "freed")
        self._seq = itertools.count(1)
        self._held: dict[str, str] = {}  # lease -> account
        # lease -> the accounts it may be on (several when an acquire was cut short)
        self.releases: Releases[tuple[str, ...]] = Releases(
            link, self._send_releases, self._released, what="account lease releases")
        self._accounts: list[str] = []
        self._global_keys = [link.key("leases", "all"), link.key("leases", "waiting")]
        self._account_keys: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.total = 0
        self._acquire = link.client.register_script(ACQUIRE)
        self._release = link.client.register_script(RELEASE)
        self._renew = link.client.register_script(RENEW)
        self._wake: Waker = lambda n: None
        self._waiting: Callable[[], int] = lambda: 0
        self._renewer: asyncio.Task[None] | None = None

    def _key(self, account: str) -> str:
        key = self._account_keys.get(account)
        if key is None:
            key = self._account_keys[account] = self.link.key("leases", "account", account)
        return key

    def _keys(self, accounts: list[str] | tuple[str, ...]) -> list[str]:
        return [*self._global_keys, *map(self._key, accounts)]

    # -- wiring ------------------------------------------------------------------------

    def start(self, accounts: list[str], wake: Waker, wake_all: Callable[[], None],
              waiting: Callable[[], int] = lambda: 0) -> None:
        """Renew held leases, wake ``wake(n)`` waiters when capacity frees elsewhere."""
        self._accounts = list(accounts)
        self._wake = wake
        self._waiting = waiting
        self.link.subscribe(self.channel, self._on_freed)
        self.link.on_up(self.releases.replay)
        # Redis may have restarted empty: streams running here count again. A
        # lease released meanwhile may come back, unrenewed: it expires.
        self.link.on_up(lambda: self.renew("restore"))
        self.link.on_up(wake_all)
        self.link.on_down(wake_all)
        self._renewer = asyncio.create_task(self._renew_forever(), name="ds2proxy-lease-renew")

    def configure(self, accounts: list[str]) -> None:
        self._accounts = list(accounts)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for lease, account in list(self._held.items()):
            self.release(account, lease)
        await self.releases.replay()
        if self.releases.kept:
            log.error("%d account leases could not be released before exit; they expire "
                      "within %d s", len(self.releases.kept), self.ttl_ms // 1000)

    # -- leasing -----------------------------------------------------------------------

    async def acquire(self, ordered: list[str], per_account: int, global_limit: int
                      ) -> tuple[str, str] | None:
        """(account, lease) for the first account in ``ordered`` with room, or
        None when the global limit or every account is full."""
        if not self.link.ready:  # nothing sent, nothing to take back
            raise StateUnavailable()
        lease = f"{self.instance}:{next(self._seq)}"
        keys = self._keys(ordered)
        try:
            index = await self.link.call(lambda: self._acquire(
                keys=keys, args=[lease, self.ttl_ms, per_account, global_limit,
                                 self.instance]))
        except BaseException:
            # Cancelled or timed out: the script may have run; take no chances.
            self._forget(lease, tuple(ordered))
            raise
        if index <= 0:
            return None
        account = ordered[index - 1]
        self._held[lease] = account
        self._adjust(account, +1)
        return account, lease

    def release(self, account: str, lease: str) -> None:
        """Give a lease back without blocking the caller (a task does the I/O)."""
        self._held.pop(lease, None)
        self._forget(lease, (account,))

    def _forget(self, lease: str, accounts: tuple[str, ...]) -> None:
        self.releases.add(lease, accounts)

    async def _send_releases(self, batch: dict[str, tuple[str, ...]]) -> list[int]:
        """Every lease of ``batch`` off every account it may be on: one call."""
        accounts = list(dict.fromkeys(a for group in batch.values() for a in group))
        index = {a: i + 1 for i, a in enumerate(accounts)}
        args: list[str | int] = [self.channel, self.instance]
        for lease, group in batch.items():
            for account in group:
                args += (index[account], lease)
        freed = iter(await self._release(keys=self._keys(accounts), args=args))
        return [sum(int(next(freed)) for _ in group) for group in batch.values()]

    def _released(self, lease: str, accounts: tuple[str, ...], freed: int) -> None:
        if freed:
            self._adjust(accounts[0] if len(accounts) == 1 else "", -1)

    def _adjust(self, account: str, delta: int) -> None:
        if account:
            self.counts[account] = max(0, self.counts.get(account, 0) + delta)
        self.total = max(0, self.total + delta)

    # -- renewal and wake-ups ----------------------------------------------------------

    async def renew(self, mode: str = "XX") -> None:
        """Renew the leases held here, reap expired ones, refresh the counts
        (``mode="restore"``: also re-add held leases Redis has lost)."""
        accounts = self._accounts
        index = {a: i + 1 for i, a in enumerate(accounts)}
        pairs = [x for lease, acc in self._held.items() if acc in index
                 for x in (index[acc], lease)]
        keys = self._keys(accounts)
        waiting = "1" if self._waiting() else "0"
        counts = await self.link.call(lambda: self._renew(
            keys=keys, args=[self.ttl_ms, self.channel, self.instance, waiting, mode,
                             *pairs]))
        self.total = int(counts[0])
        self.counts = {a: int(n) for a, n in zip(accounts, counts[1:])}

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            with contextlib.suppress(StateUnavailable):
                await self.renew()

    def _on_freed(self, payload: str) -> None:
        sender, _, count = payload.partition(" ")
        if sender != self.instance:  # our own releases wake our waiters directly
            self._wake(int(count or 1))

    @property
    def recheck_seconds(self) -> float:
        """How long a waiter waits for a wake-up before asking again."""
        return self.ttl_ms / 3000

    @property
    def held(self) -> int:
        return len(self._held)
