"""State records on Redis: one hash per namespace, and a change channel so
every instance keeps its in-memory view (account health, logged-out admin
sessions) in step with the others.

``put`` never blocks and never fails: the newest value of each key waits in
memory and a background task writes it (with its change notice) in one
pipeline, after letting the puts of the next ``GATHER_SECONDS`` join (the
health updates of every request in that time cost one round trip, and a
key put twice is written once); when Redis is unreachable the writes stay
queued and go out when it answers again, so nothing is lost to a short
outage. A watcher is also handed every record again each time the link
has subscribed anew, so a change it could not hear (Redis unreachable at
start, the subscription broken) still reaches it.

Redis losing its data (FLUSHALL, an empty restart, a failover to an empty
replica) must not undo a record: a logged-out session would be accepted
again. Every instance keeps the records it wrote or heard of, and each read
and write first checks the data generation (:mod:`.redis_epoch`); when it
changed (told by that answer or by the loss notice), the instance puts its
records back, each one only where the key is still absent (a value written
since the loss is newer), with its change notice so instances started
after the loss learn it too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson

from .errors import StateUnavailable
from .redis_epoch import LUA as EPOCH_LUA
from .redis_epoch import Epoch
from .redis_link import RedisLink, gather_writes
from .store import RecordListener

log = logging.getLogger("ds2proxy.state")

RETRY_EVERY = 0.5

# The data generation (creating a fresh one if Redis lost its data).
GENERATION = EPOCH_LUA + "return epoch"

# Puts records back after a loss: ARGV is (hash, key, value, channel,
# notice) quintuples; a key present already holds a newer value.
REASSERT = EPOCH_LUA + """
for i = 1, #ARGV, 5 do
  if redis.call('HSETNX', ARGV[i], ARGV[i + 1], ARGV[i + 2]) == 1 then
    redis.call('PUBLISH', ARGV[i + 3], ARGV[i + 4])
  end
end
return epoch
"""


class RedisRecords:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.origin = uuid.uuid4().hex[:12]  # this instance: its own notices are skipped
        self._pending: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._now = asyncio.Event()  # a flush waits: write without gathering
        # Every record written or heard of here: what is put back after a loss.
        self._known: dict[tuple[str, str], dict[str, Any]] = {}
        self.epoch = Epoch(link)
        self._generation = link.client.register_script(GENERATION)
        self._reassert = link.client.register_script(REASSERT)
        self._restoring: asyncio.Task[None] | None = None
        link.subscribe(self.epoch.channel, self._saw)

    def _hash(self, namespace: str) -> str:
        return self.link.key("records", namespace)

    def _channel(self, namespace: str) -> str:
        return self.link.channel("records", namespace)

    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        async def read() -> tuple[Any, dict[bytes, bytes]]:
            async with self.link.client.pipeline(transaction=False) as pipe:
                await self._check_generation(pipe)
                pipe.hgetall(self._hash(namespace))
                return tuple(await pipe.execute())

        epoch, raw = await self.link.call(read, check=False)
        self._saw(epoch)
        records = {key.decode(): orjson.loads(value) for key, value in raw.items()}
        for key, value in records.items():
            self._known[(namespace, key)] = value
        return records

    def put(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        self._remember(namespace, key, value)
        self._pending[(namespace, key)] = value
        self._idle.clear()
        self._start_drain()

    def _start_drain(self) -> None:
        """Write in the background (outside a loop, at set-up: with the next put)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())

    def watch(self, namespace: str, listener: RecordListener) -> None:
        def deliver(payload: str) -> None:
            notice = orjson.loads(payload)
            if notice.get("o") != self.origin:
                self._remember(namespace, notice["k"], notice.get("v"))
                listener(notice["k"], notice.get("v"))

        async def catch_up() -> None:
            for key, value in (await self.load(namespace)).items():
                listener(key, value)

        self.link.subscribe(self._channel(namespace), deliver)
        # Notices published while this instance could not hear them (Redis
        # unreachable at start, or the subscription broken) are lost: once
        # subscribed again, every record is delivered once more.
        self.link.on_subscribed(catch_up)

    async def _drain(self) -> None:
        warned = False
        while self._pending:  # puts made meanwhile wait for the next gathering
            await gather_writes(self._now)
            self._now.clear()
            batch, self._pending = self._pending, {}
            try:
                await self.link.call(lambda: self._write(batch), check=False)
            except StateUnavailable:
                for item, value in batch.items():  # newer values win
                    self._pending.setdefault(item, value)
                if not warned:
                    log.warning("redis unreachable: %d state records wait to be written",
                                len(self._pending))
                    warned = True
                await asyncio.sleep(RETRY_EVERY)
        self._idle.set()

    async def _write(self, batch: dict[tuple[str, str], dict[str, Any] | None]) -> None:
        async with self.link.client.pipeline(transaction=False) as pipe:
            await self._check_generation(pipe)
            for (namespace, key), value in batch.items():
                if value is None:
                    pipe.hdel(self._hash(namespace), key)
                else:
                    pipe.hset(self._hash(namespace), key, orjson.dumps(value))
                notice = {"o": self.origin, "k": key, "v": value}
                pipe.publish(self._channel(namespace), orjson.dumps(notice))
            self._saw((await pipe.execute())[0])

    # -- Redis losing its data ---------------------------------------------------------

    def _remember(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self._known.pop((namespace, key), None)
        else:
            self._known[(namespace, key)] = value

    async def _check_generation(self, pipe: Any) -> None:
        """First in a pipeline: the generation, a fresh one if Redis lost its data."""
        await self._generation(keys=self.epoch.keys, args=self.epoch.args(False), client=pipe)

    def _saw(self, epoch: bytes | str) -> None:
        """An answer or the loss notice names the generation: on a new one,
        put back what is known here (once, however many told of it)."""
        if self.epoch.lost(epoch) and (self._restoring is None or self._restoring.done()):
            self._restoring = asyncio.get_running_loop().create_task(
                self._restore(), name="ds2proxy-records-restore")

    async def _restore(self) -> None:
        args: list[str | bytes] = []
        for (namespace, key), value in list(self._known.items()):
            notice = {"o": self.origin, "k": key, "v": value}
            args += [self._hash(namespace), key, orjson.dumps(value),
                     self._channel(namespace), orjson.dumps(notice)]
        try:
            epoch = await self.link.call(lambda: self._reassert(
                keys=self.epoch.keys, args=[*args, *self.epoch.args(False)]), check=False)
        except StateUnavailable:
            log.warning("redis lost its data; %d state records wait to be put back",
                        len(self._known))
            return  # the next read or write that answers tries again
        self.epoch.learn(epoch)
        log.info("redis lost its data; %d state records put back", len(self._known))

    async def flush(self) -> None:
        if self._pending:
            self._now.set()
        self._start_drain()
        await self._idle.wait()

    async def close(self) -> None:
        """Give queued writes a bounded chance; what cannot be written is logged."""
        try:
            await asyncio.wait_for(self.flush(), 3.0)
        except TimeoutError:
            log.error("%d state records could not be written to redis before exit",
                      len(self._pending))
        for task in (self._task, self._restoring):
            if task is not None:
                task.cancel()
