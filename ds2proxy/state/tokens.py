"""DeepSeek tokens shared by every instance, and one login per account at a time.

The newest token of each account sits in a Redis hash with the wall-clock
time it was obtained. Before logging in, an instance takes the account's
login lock (``SET NX PX``: it expires by itself if its holder dies); the
others wait for the token it publishes instead of logging in too, which is
what gets accounts flagged.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from .redis_link import RedisLink

UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SharedTokens:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.owner = uuid.uuid4().hex
        self.channel = link.channel("tokens", "fresh")
        self._unlock = link.client.register_script(UNLOCK)
        self._fresh: dict[str, asyncio.Event] = {}
        link.subscribe(self.channel, self._announced)

    def _key(self, account: str) -> str:
        return self.link.key("tokens", account)

    def _lock_key(self, account: str) -> str:
        return self.link.key("login-lock", account)

    async def get(self, account: str) -> tuple[str, float] | None:
        """(token, age in seconds) of the newest shared token, if any."""
        found = await self.link.call(lambda: self.link.client.hmget(
            self._key(account), "token", "obtained_at"))
        if not found or not found[0]:
            return None
        return found[0].decode(), max(0.0, time.time() - float(found[1] or 0))

    async def put(self, account: str, token: str) -> None:
        key = self._key(account)

        async def write() -> None:
            async with self.link.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"token": token, "obtained_at": repr(time.time())})
                pipe.publish(self.channel, account)
                await pipe.execute()

        await self.link.call(write)

    async def lock(self, account: str, ttl_seconds: float) -> bool:
        """Take the cluster-wide login lock of ``account`` (False: someone has it)."""
        return bool(await self.link.call(lambda: self.link.client.set(
            self._lock_key(account), self.owner, nx=True, px=int(ttl_seconds * 1000))))

    async def unlock(self, account: str) -> None:
        """Drop the lock if it is still ours (it may have expired and moved on)."""
        await self.link.call(lambda: self._unlock(keys=[self._lock_key(account)],
                                                  args=[self.owner]))

    async def wait(self, account: str, timeout: float) -> None:
        """Until a new token of ``account`` is announced, or ``timeout``."""
        event = self._fresh.setdefault(account, asyncio.Event())
        waiter = asyncio.ensure_future(event.wait())
        # Not announced in time: the caller looks again (the lock may have
        # expired with an instance that died while logging in).
        done, _ = await asyncio.wait({waiter}, timeout=max(0.0, timeout))
        if not done:
            waiter.cancel()

    def _announced(self, account: str) -> None:
        event = self._fresh.pop(account, None)
        if event is not None:
            event.set()


