"""Giving back what an instance holds in Redis (account leases, key slots)
without blocking the caller, and without ever losing a give-back.

A release is kept until Redis confirms it. One task sends every release
waiting at that moment in one round trip (so a burst of finished requests
costs one call, not one each); when Redis cannot be reached the releases
stay kept, the outage is logged once, and they are sent again when Redis
answers (``replay``, hooked to the link coming back). A lease or slot that
never gets its release expires anyway after its TTL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from .errors import StateUnavailable
from .redis_link import RedisLink

log = logging.getLogger("ds2proxy.state")

T = TypeVar("T")
# Sends a batch {id: what to clear} in one call; one result per id, in order.
Send = Callable[[dict[str, T]], Awaitable[list[Any]]]
# Told of each confirmed release: (id, what was cleared, its result).
Done = Callable[[str, T, Any], None]


class Releases(Generic[T]):
    def __init__(self, link: RedisLink, send: Send[T], done: Done[T] | None = None,
                 *, what: str = "releases") -> None:
        self.link = link
        self._send = send
        self._done = done
        self.what = what
        self.kept: dict[str, T] = {}    # every release Redis has not confirmed
        self._due: dict[str, None] = {}  # those to send with the next call (ordered)
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def add(self, ident: str, target: T) -> None:
        """Give ``ident`` back (never blocks, never raises)."""
        self.kept[ident] = target
        self._due[ident] = None
        self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name="ds2proxy-redis-release")

    async def _drain(self) -> None:
        while self._due:
            batch = {i: self.kept[i] for i in self._due if i in self.kept}
            self._due = {}
            if not batch:
                continue
            try:
                results = await self.link.call(lambda: self._send(batch))
            except StateUnavailable:
                if not self._warned:
                    self._warned = True
                    log.warning("redis unreachable: %d %s kept, sent again when it is back",
                                len(self.kept), self.what)
                return  # kept: replay() sends them when the link is up again
            self._warned = False
            for (ident, target), result in zip(batch.items(), results):
                if self.kept.pop(ident, None) is not None and self._done is not None:
                    self._done(ident, target, result)

    async def replay(self) -> None:
        """Send every kept release again (Redis is back, or the instance closes)."""
        for ident in self.kept:
            self._due[ident] = None
        await self.settle()

    async def settle(self) -> None:
        """Wait until every release due has been sent (or found Redis down)."""
        while self._due or (self._task is not None and not self._task.done()):
            self._start()
            assert self._task is not None
            await asyncio.shield(self._task)
