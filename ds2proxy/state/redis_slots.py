"""A key's concurrent-request slots shared by every instance on one Redis.

Each key has a sorted set of its slots scored by expiry (ms, Redis's own
clock). Taking a slot is one Lua script: drop expired members, compare the
count with the limit, add the slot. A slot lives ``lease_ttl_seconds``
unless renewed; the instance holding it renews every third of that (as it
does its account leases), so the slots of an instance killed with -9 are
free again within ``lease_ttl_seconds``. Releases go out in the background,
every one waiting at that moment in one call; one that cannot reach Redis
is kept and replayed when Redis is back (and would expire anyway), see
:mod:`ds2proxy.state.releases`; after Redis comes back empty, or loses its
data without an outage (:mod:`ds2proxy.state.redis_epoch`), the slots in use
here are put back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import StateUnavailable
from .redis_epoch import LUA as EPOCH
from .redis_epoch import Epoch
from .redis_link import RedisLink
from .releases import Releases

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# A key's set lives as long as its longest slot: an instance with a shorter
# TTL (a lease_ttl_seconds change rolling out) never cuts another's short.
_EXTEND = """
local function extend(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
"""

# The scripts that take or renew slots end their KEYS and ARGV with the data
# generation's (see redis_epoch) and answer it last; a take answers before it
# the settling time left (nothing is taken while Redis settles: the holders
# are putting their slots back; the caller asks again after it).

# KEYS[1] the key's slots; ARGV: slot, limit, ttl ms. {1, 0, epoch}: taken,
# {0, 0, epoch}: full.
TAKE = EPOCH + _NOW + _EXTEND + """
if settling_ms() > 0 then return {0, settling_ms(), epoch} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {0, 0, epoch} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
extend(KEYS[1], tonumber(ARGV[3]) + 1000)
return {1, 0, epoch}
"""

# The rpm window and a slot in one step, both or neither. KEYS[1] the key's
# slots, KEYS[2] its window; ARGV: slot, limit, ttl ms, rpm, window ms, a
# unique member. Answers {full, wait ms, settling ms, epoch}: {0, 0}: taken
# and counted; {0, wait ms}: the window is full (its wait is named first: a
# free slot would not serve the request sooner); {1, 0}: every slot is held.
TAKE_COUNTED = EPOCH + _NOW + _EXTEND + """
if settling_ms() > 0 then return {1, 0, settling_ms(), epoch} end
local window = tonumber(ARGV[5])
local rpm = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[2])
if n >= rpm then
  local freeing = redis.call('ZRANGE', KEYS[2], n - rpm, n - rpm, 'WITHSCORES')
  return {0, math.max(1, tonumber(freeing[2]) + window - now), 0, epoch}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {1, 0, 0, epoch} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
extend(KEYS[1], tonumber(ARGV[3]) + 1000)
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('PEXPIRE', KEYS[2], window + 1000)
return {0, 0, 0, epoch}
"""

# KEYS: slot sets; ARGV: (key index, slot) pairs. 1 or 0 per pair.
GIVE = """
local given = {}
for j = 1, #ARGV, 2 do
  given[#given + 1] = redis.call('ZREM', KEYS[tonumber(ARGV[j])], ARGV[j + 1])
end
return given
"""

# How many settling times in a row a take waits out (each a new loss of data)
# before it counts as refused.
SETTLE_TRIES = 3

COUNT = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')"

# KEYS: slot sets; ARGV: ttl ms, 'XX' or 'restore', then (key index, slot)
# pairs. Renewal never resurrects a slot already released (XX), unless the
# caller's data generation is gone. Answers the generation.
RENEW = EPOCH + _NOW + _EXTEND + """
local ttl = tonumber(ARGV[1])
local keep = ARGV[2] == 'XX' and not lost
for j = 3, #ARGV, 2 do
  local key = KEYS[tonumber(ARGV[j])]
  if keep then
    redis.call('ZADD', key, 'XX', now + ttl, ARGV[j + 1])
  else
    redis.call('ZADD', key, now + ttl, ARGV[j + 1])
  end
  extend(key, ttl + 1000)
end
return epoch
"""


class RedisSlots:
    """The concurrent-request half of :class:`ds2proxy.state.redis_limits.RedisCounters`."""

    def __init__(self, link: RedisLink, ttl_seconds: int) -> None:
        self.link = link
        self.ttl_ms = ttl_seconds * 1000
        self.instance = uuid.uuid4().hex[:12]
        self._seq = itertools.count(1)
        self._held: dict[str, str] = {}  # slot -> key name
        self.releases: Releases[str] = Releases(link, self._send_gives,
                                                what="key slot releases")
        self._renewer: asyncio.Task[None] | None = None
        self._take = link.client.register_script(TAKE)
        self._take_counted = link.client.register_script(TAKE_COUNTED)
        self._give = link.client.register_script(GIVE)
        self._count = link.client.register_script(COUNT)
        self._renew = link.client.register_script(RENEW)
        self.epoch = Epoch(link)
        self._restorer: asyncio.Task[None] | None = None
        link.on_up(self.releases.replay)
        link.on_up(lambda: self.renew("restore"))
        link.subscribe(self.epoch.channel, self._saw)

    def _key(self, name: str) -> str:
        return self.link.key("slots", name)

    async def take(self, name: str, limit: int) -> str | None:
        (taken, _, _), slot = await self._run(name, lambda slot: self._take(
            keys=[self._key(name), *self.epoch.keys],
            args=[slot, limit, self.ttl_ms, *self._epoch_args()]), lambda got: got[0] == 1)
        return slot if taken == 1 else None

    async def take_counted(self, name: str, limit: int, window_key: str, rpm: int,
                           window_ms: int, member: str) -> tuple[float, str | None]:
        """A slot and a place in the key's rpm window, in one call: (seconds
        to wait, None) over the rpm, (0, None) when every slot is held."""
        (full, wait, _, _), slot = await self._run(name, lambda slot: self._take_counted(
            keys=[self._key(name), window_key, *self.epoch.keys],
            args=[slot, limit, self.ttl_ms, rpm, window_ms, member, *self._epoch_args()]),
            lambda got: list(got[:3]) == [0, 0, 0])
        if int(wait):
            return int(wait) / 1000, None
        return 0.0, None if int(full) else slot

    async def _run(self, name: str, script: Callable[[str], Awaitable[Any]],
                   taken: Callable[[Any], bool]) -> tuple[Any, str]:
        """``script(slot)`` under the link's deadline, again after any settling
        time Redis names; the slot is held here when ``taken(its answer)``."""
        for _ in range(SETTLE_TRIES):
            answer, slot = await self._run_once(name, script, taken)
            if not int(answer[-2]):
                break
            await asyncio.sleep(int(answer[-2]) / 1000)
        return answer, slot

    async def _run_once(self, name: str, script: Callable[[str], Awaitable[Any]],
                        taken: Callable[[Any], bool]) -> tuple[Any, str]:
        if not self.link.ready:  # nothing sent, nothing to take back
            raise StateUnavailable()
        slot = f"{self.instance}:{next(self._seq)}"
        try:
            answer = await self.link.call(lambda: script(slot))
        except BaseException:
            # Cancelled or timed out: the script may have run; take no chances.
            self.give(name, slot)
            raise
        if taken(answer):
            self._held[slot] = name
            self._start_renewing()
        self._saw(answer[-1])
        return answer, slot

    def give(self, name: str, slot: str) -> None:
        self._held.pop(slot, None)
        self.releases.add(slot, name)

    async def _send_gives(self, batch: dict[str, str]) -> list[int]:
        """Every slot of ``batch`` (slot -> key name) given back in one call."""
        names = list(dict.fromkeys(batch.values()))
        index = {n: i + 1 for i, n in enumerate(names)}
        args = [x for slot, name in batch.items() for x in (index[name], slot)]
        return list(await self._give(keys=[self._key(n) for n in names], args=args))

    async def count(self, name: str) -> int:
        return int(await self.link.call(lambda: self._count(keys=[self._key(name)], args=[])))

    # -- renewal -----------------------------------------------------------------------

    async def renew(self, mode: str = "XX") -> None:
        """Renew the slots held here (``mode="restore"``: re-add ones Redis lost)."""
        if not self._held:
            return
        names = sorted(set(self._held.values()))
        index = {n: i + 1 for i, n in enumerate(names)}
        pairs = [x for slot, n in self._held.items() for x in (index[n], slot)]
        keys = [self._key(n) for n in names] + self.epoch.keys
        args = [self.ttl_ms, mode, *pairs, *self._epoch_args()]
        self.epoch.learn(await self.link.call(lambda: self._renew(keys=keys, args=args)))

    # -- Redis losing its data ---------------------------------------------------------

    def _epoch_args(self) -> list[str | int]:
        return self.epoch.args(bool(self._held))

    def _saw(self, epoch: bytes | str) -> None:
        """A new data generation: put the slots held here back, in the
        background (the renewal script restores on a new generation)."""
        if not self.epoch.lost(epoch):
            return
        if not self._held:
            self.epoch.learn(epoch)
        elif self._restorer is None or self._restorer.done():
            self._restorer = asyncio.get_running_loop().create_task(
                self._restore(), name="ds2proxy-slot-restore")

    async def _restore(self) -> None:
        with contextlib.suppress(StateUnavailable):
            await self.renew()

    def _start_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_forever(), name="ds2proxy-slot-renew")

    async def _renew_forever(self) -> None:
        while self._held:  # ends when nothing is held; the next take starts another
            await asyncio.sleep(self.ttl_ms / 3000)
            with contextlib.suppress(StateUnavailable):
                await self.renew()

    async def close(self) -> None:
        for task in (self._renewer, self._restorer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for slot, name in list(self._held.items()):
            self.give(name, slot)
        await self.releases.replay()
