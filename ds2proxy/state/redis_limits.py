"""Key counters and the pacing gate on Redis: one Lua script per decision,
so a check and its count are one atomic round trip on the Redis clock
(instances' clocks may differ; the window must not).
"""

from __future__ import annotations

import itertools
import os
import time

from .counters import DAY, WINDOW
from .redis_link import RedisLink
from .redis_slots import RedisSlots

# KEYS[1] the key's window (a sorted set of request times); ARGV: limit,
# window ms, a unique member. Returns 0 (admitted) or the wait in ms.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[1])
if n >= limit then
  local freeing = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  return math.max(1, tonumber(freeing[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window + 1000)
return 0
"""

_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. (now - tonumber(ARGV[1])), '+inf')
"""

# KEYS[1] next allowed start (ms), KEYS[2] starts in the last hour; ARGV: gap
# ms, hourly cap, a unique member. Returns 0 (granted) or the wait in ms.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
if nxt > now then return nxt - now end
local cap = tonumber(ARGV[2])
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 3600000)
  local n = redis.call('ZCARD', KEYS[2])
  if n >= cap then
    local oldest = redis.call('ZRANGE', KEYS[2], n - cap, n - cap, 'WITHSCORES')
    return math.max(1, tonumber(oldest[2]) + 3600000 - now)
  end
  redis.call('ZADD', KEYS[2], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[2], 3600000)
end
local gap = tonumber(ARGV[1])
if gap > 0 then redis.call('SET', KEYS[1], now + gap, 'PX', gap + 1000) end
return 0
"""

# A key's tokens of one UTC day, the day taken from Redis's clock: instances
# whose clocks disagree (or straddle midnight) still add to one counter.
# ARGV: key prefix ("<prefix>tokens:"), key name; then tokens, ttl seconds.
_DAY_KEY = """
local t = redis.call('TIME')
local key = ARGV[1] .. math.floor(tonumber(t[1]) / 86400) .. ':' .. ARGV[2]
"""
_ADD_TOKENS = _DAY_KEY + """
local total = redis.call('INCRBY', key, tonumber(ARGV[3]))
redis.call('EXPIRE', key, tonumber(ARGV[4]))
return total
"""
_TOKENS = _DAY_KEY + "return tonumber(redis.call('GET', key) or '0')"

_serial = itertools.count()


def unique() -> str:
    """A member no other instance or call produces."""
    return f"{os.getpid()}-{id(_serial)}-{next(_serial)}-{time.time_ns()}"


class RedisCounters:
    def __init__(self, link: RedisLink, slot_ttl_seconds: int = 30) -> None:
        self.link = link
        self._slots = RedisSlots(link, slot_ttl_seconds)
        self._hit = link.client.register_script(_HIT)
        self._count = link.client.register_script(_COUNT)
        self._tokens_prefix = link.key("tokens", "")
        self._add_tokens = link.client.register_script(_ADD_TOKENS)
        self._tokens = link.client.register_script(_TOKENS)

    def _window_key(self, name: str) -> str:
        return self.link.key("rpm", name)

    async def hit(self, name: str, limit: int, window: float = WINDOW) -> float:
        args = [limit, int(window * 1000), unique()]
        wait = await self.link.call(lambda: self._hit(keys=[self._window_key(name)], args=args))
        return int(wait) / 1000

    async def count(self, name: str, window: float = WINDOW) -> int:
        return int(await self.link.call(lambda: self._count(
            keys=[self._window_key(name)], args=[int(window * 1000)])))

    async def add_tokens(self, name: str, tokens: int) -> int:
        args = [self._tokens_prefix, name, max(0, tokens), int(2 * DAY)]
        return int(await self.link.call(lambda: self._add_tokens(args=args)))

    async def tokens(self, name: str) -> int:
        return int(await self.link.call(lambda: self._tokens(args=[self._tokens_prefix, name])))

    async def take_slot(self, name: str, limit: int) -> str | None:
        return await self._slots.take(name, limit)

    async def hit_and_take_slot(self, name: str, rpm: int, limit: int,
                                window: float = WINDOW) -> tuple[float, str | None]:
        return await self._slots.take_counted(name, limit, self._window_key(name), rpm,
                                              int(window * 1000), unique())

    def give_slot(self, name: str, slot: str) -> None:
        self._slots.give(name, slot)

    async def slots(self, name: str) -> int:
        return await self._slots.count(name)

    async def close(self) -> None:
        """Release the slots held here (their requests are over)."""
        await self._slots.close()


class RedisPaceGate:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._claim = link.client.register_script(_CLAIM)

    async def claim(self, identifier: str, gap: float, max_per_hour: int) -> float:
        keys = [self.link.key("pace", "next", identifier),
                self.link.key("pace", "starts", identifier)]
        args = [int(gap * 1000), max_per_hour, unique()]
        wait = await self.link.call(lambda: self._claim(keys=keys, args=args))
        return int(wait) / 1000
