"""The config shared by every instance: a versioned document in Redis.

config.json stays each instance's bootstrap and export: the first instance
to start publishes its document as version 1; the others adopt the shared
one. A write is a compare-and-set on the version (one Lua script): when
another instance wrote in between, the caller re-applies its change to the
newer document and tries again, so two concurrent admin changes both
survive. Every commit publishes its version; each instance also checks the
version every ``POLL_EVERY`` seconds, so a notice missed during an outage
is caught up; a version lower than the one applied here means Redis lost
the document, and the instance joins again (publishing its own when none is
there). Each first publication names a new epoch: an instance that finds
another epoch adopts that document whatever its version (Redis lost the
document and another instance published its own, then changed it up to
this instance's version number).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING

import orjson

from .errors import StateUnavailable
from .redis_link import RedisLink

if TYPE_CHECKING:
    from ..config_store import ConfigStore

log = logging.getLogger("ds2proxy.config")

POLL_EVERY = 1.0

# KEYS: document, version, epoch. ARGV: expected version, document, channel,
# the epoch a first publication starts.
_CAS = """
local v = tonumber(redis.call('GET', KEYS[2]) or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
if v == 0 then redis.call('SET', KEYS[3], ARGV[4]) end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], v + 1)
redis.call('PUBLISH', ARGV[3], v + 1)
return v + 1
"""


class SharedDocument:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.channel = link.channel("config", "changed")
        self._keys = [link.key("config", "document"), link.key("config", "version"),
                      link.key("config", "epoch")]
        self._cas = link.client.register_script(_CAS)

    async def state(self) -> tuple[int, bytes | None]:
        """The shared version and the epoch of its first publication."""
        version, epoch = await self.link.call(
            lambda: self.link.client.mget(self._keys[1:]), check=False)
        return int(version or 0), epoch

    async def load(self) -> tuple[int, dict | None]:
        doc, version, _ = await self.link.call(lambda: self.link.client.mget(self._keys),
                                               check=False)
        return int(version or 0), (orjson.loads(doc) if doc else None)

    async def commit(self, expected: int, data: dict) -> int:
        """The new version, or 0 when the document moved on since ``expected``."""
        args = [expected, orjson.dumps(data), self.channel, uuid.uuid4().hex]
        return int(await self.link.call(lambda: self._cas(keys=self._keys, args=args),
                                        check=False))


class ConfigSync:
    """Keeps one ConfigStore on the shared document."""

    def __init__(self, store: ConfigStore, doc: SharedDocument) -> None:
        self.store = store
        self.doc = doc
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self.joined = False
        self.epoch: bytes | None = None  # of the shared document the store follows

    def start(self) -> None:
        self.doc.link.subscribe(self.doc.channel, lambda payload: self._kick.set())
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                           name="ds2proxy-config-sync")

    async def join(self) -> None:
        """Publish this instance's document as version 1 if there is none,
        else adopt the shared one."""
        if await self.doc.commit(0, self.store.snapshot()):
            log.info("published this instance's config as the shared version 1")
        self.epoch = None  # whichever document is there now is the one to follow
        await self.catch_up()
        self.joined = True

    async def catch_up(self) -> None:
        shared, epoch = await self.doc.state()
        if shared < self.store.version:
            # Redis lost the document (restarted empty, or a replica that was
            # behind took over): its versions start again, and a change
            # numbered below ours would never be adopted. Join afresh.
            log.warning("the shared config went back from version %d to %d; joining it again",
                        self.store.version, shared)
            self.store.version = 0
            await self.join()
            return
        if self.epoch is not None and epoch != self.epoch:
            log.warning("the shared config was published afresh (Redis lost it); adopting "
                        "its version %d", shared)
            self.store.version = 0
        self.epoch = epoch
        if shared > self.store.version:
            version, data = await self.doc.load()
            if data is not None:
                await self.store.adopt(version, data)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), POLL_EVERY)
            self._kick.clear()
            try:
                await (self.catch_up() if self.joined else self.join())
            except StateUnavailable:
                continue
            except Exception:  # a bad shared document must not stop the sync
                log.exception("the shared config could not be applied")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
