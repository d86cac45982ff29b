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
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson

from .errors import StateUnavailable
from .redis_link import RedisLink, gather_writes
from .store import RecordListener

log = logging.getLogger("ds2proxy.state")

RETRY_EVERY = 0.5


class RedisRecords:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.origin = uuid.uuid4().hex[:12]  # this instance: its own notices are skipped
        self._pending: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._now = asyncio.Event()  # a flush waits: write without gathering

    def _hash(self, namespace: str) -> str:
        return self.link.key("records", namespace)

    def _channel(self, namespace: str) -> str:
        return self.link.channel("records", namespace)

    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        raw = await self.link.call(lambda: self.link.client.hgetall(self._hash(namespace)),
                                   check=False)
        return {key.decode(): orjson.loads(value) for key, value in raw.items()}

    def put(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
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
            for (namespace, key), value in batch.items():
                if value is None:
                    pipe.hdel(self._hash(namespace), key)
                else:
                    pipe.hset(self._hash(namespace), key, orjson.dumps(value))
                notice = {"o": self.origin, "k": key, "v": value}
                pipe.publish(self._channel(namespace), orjson.dumps(notice))
            await pipe.execute()

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
        if self._task is not None:
            self._task.cancel()
