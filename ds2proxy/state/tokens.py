"""DeepSeek tokens shared by every instance, and one login per account at a time.

The newest token of each account sits in a Redis hash with the time it was
obtained, on Redis's clock (instances' clocks may differ; its age must not).
Before logging in, an instance takes the account's login lock (``SET NX
PX``); the others wait for the token it publishes instead of logging in
too, which is what gets accounts flagged. The lock is a short lease its
holder renews while the login runs (never past the TTL asked for): one
whose holder was killed mid-login is free again within
``LOCK_LEASE_SECONDS``, not after the whole login timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from .errors import StateUnavailable
from .redis_link import RedisLink

LOCK_LEASE_SECONDS = 6.0

UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# Times on Redis's clock (seconds, as text), so instances whose clocks differ
# agree on a token's age. PUT: KEYS[1] the account's hash; ARGV: token,
# channel, account. GET: the token and its age, or nil.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""
PUT = _NOW + """
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'obtained_at', string.format('%.6f', now))
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
GET = _NOW + """
local found = redis.call('HMGET', KEYS[1], 'token', 'obtained_at')
if not found[1] then return nil end
return {found[1], string.format('%.6f', now - tonumber(found[2] or now))}
"""


class SharedTokens:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.owner = uuid.uuid4().hex
        self.channel = link.channel("tokens", "fresh")
        self._unlock = link.client.register_script(UNLOCK)
        self._renew_lock = link.client.register_script(RENEW_LOCK)
        self._keepers: dict[str, asyncio.Task[None]] = {}  # account -> its lock's renewal
        self._put = link.client.register_script(PUT)
        self._get = link.client.register_script(GET)
        self._fresh: dict[str, asyncio.Event] = {}
        link.subscribe(self.channel, self._announced)

    def _key(self, account: str) -> str:
        return self.link.key("tokens", account)

    def _lock_key(self, account: str) -> str:
        return self.link.key("login-lock", account)

    async def get(self, account: str) -> tuple[str, float] | None:
        """(token, age in seconds) of the newest shared token, if any."""
        found = await self.link.call(lambda: self._get(keys=[self._key(account)]))
        if not found:
            return None
        return found[0].decode(), max(0.0, float(found[1]))

    async def put(self, account: str, token: str) -> None:
        args = [token, self.channel, account]
        await self.link.call(lambda: self._put(keys=[self._key(account)], args=args))

    async def lock(self, account: str, ttl_seconds: float) -> bool:
        """Take the cluster-wide login lock of ``account`` for at most
        ``ttl_seconds`` (False: someone has it); renewed here until :meth:`unlock`."""
        lease = min(ttl_seconds, LOCK_LEASE_SECONDS)
        got = bool(await self.link.call(lambda: self.link.client.set(
            self._lock_key(account), self.owner, nx=True, px=int(lease * 1000))))
        if got:
            self._stop_keeping(account)
            self._keepers[account] = asyncio.get_running_loop().create_task(
                self._keep(account, lease, ttl_seconds), name="ds2proxy-login-lock")
        return got

    async def _keep(self, account: str, lease: float, ttl_seconds: float) -> None:
        """Renew the lock every third of its lease, never past ``ttl_seconds``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + ttl_seconds
        args = [self.owner, int(lease * 1000)]
        while (left := end - loop.time()) > lease / 3:
            await asyncio.sleep(lease / 3)
            args[1] = int(min(lease, left) * 1000)
            with contextlib.suppress(StateUnavailable):  # a later renewal may get through
                if not await self.link.call(lambda: self._renew_lock(
                        keys=[self._lock_key(account)], args=args)):
                    return  # expired and taken by another: not ours to keep

    def _stop_keeping(self, account: str) -> None:
        keeper = self._keepers.pop(account, None)
        if keeper is not None:
            keeper.cancel()

    async def unlock(self, account: str) -> None:
        """Drop the lock if it is still ours (it may have expired and moved on)."""
        self._stop_keeping(account)
        await self.link.call(lambda: self._unlock(keys=[self._lock_key(account)],
                                                  args=[self.owner]))

    def armed(self, account: str) -> asyncio.Event:
        """What the next announcement of a token of ``account`` sets. Taken
        before looking for the token, so one announced between that look and
        :meth:`wait` is not missed (it cost a whole recheck period)."""
        return self._fresh.setdefault(account, asyncio.Event())

    async def wait(self, account: str, timeout: float,
                   armed: asyncio.Event | None = None) -> None:
        """Until a new token of ``account`` is announced (since ``armed`` was
        taken, given it), or ``timeout``."""
        event = armed if armed is not None else self.armed(account)
        # Not announced in time: the caller looks again (the lock may have
        # expired with an instance that died while logging in).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, timeout))

    def _announced(self, account: str) -> None:
        event = self._fresh.pop(account, None)
        if event is not None:
            event.set()


