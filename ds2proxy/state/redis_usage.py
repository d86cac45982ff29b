"""The usage store on Redis, shared by every instance.

Rows: a sorted set scored by a cluster-wide id (``INCRBY``), each member the
row's JSON. Rollups: one hash per grain and bucket (fields
``<key>\\x1f<model>\\x1f<account>\\x1f<family>\\x1f<key ref>\\x1f<metric>``,
``HINCRBY``), each expiring with its grain's retention, plus a sorted set of
the buckets per grain for range reads. Rows and cells written before they
kept the key's ref (four dimensions) take it from the names the keys had at
the upgrade (:meth:`RedisUsage.adopt_refs`, a hash written once).

``record`` only appends to an in-memory buffer; a background task writes
batches (one MULTI/EXEC each), letting the rows of the next
``GATHER_SECONDS`` join first (or ``BATCH`` rows, whichever comes first), so
a busy instance spends one round trip on many rows. When Redis is
unreachable rows stay buffered
(up to ``MAX_BUFFER``; beyond that the oldest are dropped and counted in the
log) and are written when it answers again: a failure is never silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import orjson

from .errors import StateUnavailable
from .redis_link import RedisLink, gather_writes
from .usage import FILTERS, GRAINS, GROUPS, ROW_FIELDS

log = logging.getLogger("ds2proxy.usage")

BATCH = 500
MAX_BUFFER = 100_000
RETRY_EVERY = 0.5
SCAN = 1000
SEP = "\x1f"
METRICS = ("requests", "errors", "prompt_tokens", "completion_tokens", "reasoning_tokens",
           "latency_ms_sum")
_PRUNE_EVERY = 600.0
# The marker and the names' refs in one step: a start that fails between
# them must not leave the marker without the map.
_ADOPT = """
if redis.call('set', KEYS[1], '1', 'NX') and #ARGV > 0 then
  for i = 1, #ARGV, 2 do redis.call('hset', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
return 1
"""


def _filtered(filters: dict[str, Any]) -> bool:
    return bool(filters.get("errors")) or any(filters.get(name) not in (None, "")
                                              for name in FILTERS)


def _dim(value: Any) -> str:
    """A rollup dimension with no separator in it: the model is the client's
    string, and a separator there would shift the account and family apart."""
    return str(value or "").replace(SEP, "\ufffd")


def _matches(row: dict[str, Any], filters: dict[str, Any], legacy: dict[str, str]) -> bool:
    for name in FILTERS:
        value = filters.get(name)
        if value not in (None, "") and _field(row, name, legacy) != value:
            return False
    return not filters.get("errors") or row["status"] >= 400 or bool(row["error_code"])


def _field(row: dict[str, Any], name: str, legacy: dict[str, str]) -> Any:
    """A row's field; an older row's key ref from its key's name."""
    if name == "key_ref" and "key_ref" not in row:
        return legacy.get(row.get("key_name") or "", "")
    return row.get(name)


def _ref_of(dims: list[str], legacy: dict[str, str]) -> str:
    """A rollup cell's key ref (an older cell has four dimensions)."""
    return dims[4] if len(dims) > 4 else legacy.get(dims[0], "")


def _of_key(dims: list[str], key_name: str | None, key_ref: str | None,
            legacy: dict[str, str]) -> bool:
    if key_ref is not None:
        return _ref_of(dims, legacy) == key_ref
    return key_name is None or dims[0] == key_name


def _listed(row: dict[str, Any]) -> dict[str, Any]:
    """A row as a page of the log shows it (no kept body)."""
    row.pop("request_body", None)
    return row


class RedisUsage:
    def __init__(self, link: RedisLink, *, raw_days: int = 7, hourly_days: int = 90) -> None:
        self.link = link
        self.raw_days, self.hourly_days = raw_days, hourly_days
        self._buffer: deque[dict[str, Any]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._now = asyncio.Event()  # a flush waits, or a batch is full: write now
        self.rows_written = 0
        self.dropped = 0
        self._pruned = 0.0

    def retain(self, raw_days: int, hourly_days: int) -> None:
        """New retention (a config change): buckets written from now on expire
        by it, and rows past it go at the next write's prune."""
        self.raw_days, self.hourly_days = raw_days, hourly_days
        self._pruned = 0.0

    def release_memory(self) -> None:
        """Nothing to drop: the rows live in Redis, the buffer empties as it writes."""

    def _key(self, *parts: str) -> str:
        return self.link.key("usage", *parts)

    def _retention(self, grain: str) -> int:
        days = {"minute": self.raw_days, "hour": self.hourly_days,
                "day": self.hourly_days * 10}[grain]
        return int(days * 86400)

    # -- writing ------------------------------------------------------------------------

    def record(self, row: dict[str, Any]) -> None:
        if len(self._buffer) >= MAX_BUFFER:
            self._buffer.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("usage buffer full while redis is unreachable: %d rows dropped",
                          self.dropped)
        self._buffer.append(row)
        self._idle.clear()
        if len(self._buffer) >= BATCH:
            self._now.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._buffer:  # rows recorded meanwhile wait for the next gathering
            await gather_writes(self._now)
            self._now.clear()
            await self._write_rows(len(self._buffer))
        self._idle.set()
        if time.time() - self._pruned > _PRUNE_EVERY:
            self._pruned = time.time()
            try:
                await self._prune()
            except StateUnavailable:
                log.info("usage rows past retention not pruned (redis unreachable); "
                         "tried again in %.0f s", _PRUNE_EVERY)
        if self._buffer:  # recorded while pruning
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _write_rows(self, count: int) -> None:
        """Write the oldest ``count`` buffered rows, keeping them through an outage."""
        warned = False
        while count > 0 and self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(BATCH, count, len(self._buffer)))]
            try:
                await self.link.call(lambda: self._write(batch), check=False)
                self.rows_written += len(batch)
                count -= len(batch)
            except StateUnavailable:
                self._buffer.extendleft(reversed(batch))
                if not warned:
                    log.warning("redis unreachable: %d usage rows buffered, written when it "
                                "is back", len(self._buffer))
                    warned = True
                await asyncio.sleep(RETRY_EVERY)
            except Exception as exc:
                # A row that cannot be encoded (an integer past 64 bits, a
                # missing field): the writer goes on without it, or its task
                # ends and a flush waits forever with the rest unwritten.
                log.error("usage store: %d rows could not be written: %s", len(batch),
                          f"{type(exc).__name__}: {exc}")
                count -= len(batch)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        client = self.link.client
        last = await client.incrby(self._key("id"), len(rows))
        async with client.pipeline(transaction=True) as pipe:
            members = {}
            for offset, row in enumerate(rows):
                row_id = last - len(rows) + 1 + offset
                members[orjson.dumps({"id": row_id, **{f: row[f] for f in ROW_FIELDS}})] = row_id
            pipe.zadd(self._key("rows"), members)
            self._add_rollups(pipe, rows)
            await pipe.execute()

    def _add_rollups(self, pipe: Any, rows: list[dict[str, Any]]) -> None:
        """One increment per bucket, dimensions and metric for the whole batch."""
        sums: dict[tuple[str, int], dict[str, float]] = {}
        for row in rows:
            failed = int(row["status"] >= 400 or bool(row["error_code"]))
            dims = SEP.join(_dim(row[d]) for d in ("key_name", "model", "account", "family",
                                                   "key_ref"))
            values = (1, failed, row["prompt_tokens"], row["completion_tokens"],
                      row["reasoning_tokens"], float(row["latency_ms"] or 0))
            for grain, size in GRAINS.items():
                cell = sums.setdefault((grain, int(row["time"] // size) * size), {})
                for metric, value in zip(METRICS, values):
                    field = f"{dims}{SEP}{metric}"
                    cell[field] = cell.get(field, 0) + value
        for (grain, bucket), cell in sums.items():
            key = self._key("roll", grain, str(bucket))
            for field, value in cell.items():
                if field.endswith("latency_ms_sum"):
                    pipe.hincrbyfloat(key, field, value)
                elif value:
                    pipe.hincrby(key, field, int(value))
            pipe.expireat(key, bucket + self._retention(grain))
            pipe.zadd(self._key("buckets", grain), {str(bucket): bucket})

    async def _prune(self) -> None:
        """Drop buckets and rows past retention, a chunk per call: a large
        backlog (retention shortened) takes many short calls, never one that
        outlasts its deadline and marks Redis down."""
        now = time.time()
        client = self.link.client
        for grain in GRAINS:
            key, cut = self._key("buckets", grain), now - self._retention(grain)
            await self.link.call(lambda: client.zremrangebyscore(key, "-inf", cut), check=False)
        cut, rows = now - self.raw_days * 86400, self._key("rows")
        while True:
            oldest = await self.link.call(lambda: client.zrange(rows, 0, SCAN - 1), check=False)
            old = [m for m in oldest if orjson.loads(m)["time"] < cut]
            if not old:
                return
            await self.link.call(lambda: client.zrem(rows, *old), check=False)
            if len(old) < len(oldest):
                return

    async def flush(self) -> None:
        if self._buffer:
            self._now.set()
        await self._idle.wait()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), 3.0)
        except TimeoutError:
            log.error("%d usage rows could not be written to redis before exit",
                      len(self._buffer))
        if self._task is not None:
            self._task.cancel()

    # -- reading ------------------------------------------------------------------------

    async def requests(self, filters: dict[str, Any], limit: int, offset: int
                       ) -> tuple[list[dict[str, Any]], int]:
        """Newest first. Unfiltered: one round trip. Filtered: the rows kept
        (bounded by retention) are scanned in chunks, each its own call with
        its own deadline, so a long scan of a large log is slow but never
        mistaken for Redis being unreachable."""
        if not _filtered(filters):
            rows, total = await self.link.call(lambda: self._page(limit, offset))
            return [_listed(r) for r in rows], total
        page: list[dict[str, Any]] = []
        total, below = 0, "+inf"
        legacy = await self._legacy_refs() if filters.get("key_ref") else {}
        while True:
            # By id, not position: rows written meanwhile do not shift the scan.
            chunk = await self.link.call(lambda: self.link.client.zrevrangebyscore(
                self._key("rows"), below, "-inf", start=0, num=SCAN))
            for member in chunk:
                row = orjson.loads(member)
                if _matches(row, filters, legacy):
                    if offset <= total < offset + limit:
                        page.append(_listed(row))
                    total += 1
            if len(chunk) < SCAN:
                return page, total
            below = f"({orjson.loads(chunk[-1])['id']}"

    async def _page(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        async with self.link.client.pipeline(transaction=True) as pipe:
            pipe.zcard(self._key("rows"))
            pipe.zrevrange(self._key("rows"), offset, offset + max(limit, 1) - 1)
            total, members = await pipe.execute()
        return [orjson.loads(m) for m in members][:max(limit, 0)], int(total)

    async def request(self, row_id: int) -> dict[str, Any] | None:
        found = await self.link.call(lambda: self.link.client.zrangebyscore(
            self._key("rows"), row_id, row_id))
        return orjson.loads(found[0]) if found else None

    async def _cells(self, grain: str, since: float) -> list[tuple[int, list[str], str, float]]:
        """(bucket, dims, metric, value) of every rollup cell since ``since``."""
        async def read() -> list[tuple[int, list[str], str, float]]:
            client = self.link.client
            buckets = [int(b) for b in await client.zrangebyscore(
                self._key("buckets", grain), int(since), "+inf")]
            async with client.pipeline(transaction=False) as pipe:
                for bucket in buckets:
                    pipe.hgetall(self._key("roll", grain, str(bucket)))
                hashes = await pipe.execute()
            cells = []
            for bucket, fields in zip(buckets, hashes):
                for field, value in fields.items():
                    *dims, metric = field.decode().split(SEP)
                    cells.append((bucket, dims, metric, float(value)))
            return cells

        return await self.link.call(read, timeout=10)

    async def series(self, grain: str, since: float, key_name: str | None = None,
                     key_ref: str | None = None) -> list[dict[str, Any]]:
        sums: dict[int, dict[str, Any]] = {}
        legacy = await self._legacy_refs() if key_ref is not None else {}
        for bucket, dims, metric, value in await self._cells(grain, since):
            if metric == "latency_ms_sum" or not _of_key(dims, key_name, key_ref, legacy):
                continue
            entry = sums.setdefault(bucket, {"bucket": bucket, **dict.fromkeys(METRICS[:5], 0)})
            entry[metric] += int(value)
        return [sums[b] for b in sorted(sums)]

    async def totals(self, group: str, grain: str, since: float,
                     key_name: str | None = None, key_ref: str | None = None
                     ) -> list[dict[str, Any]]:
        if group not in GROUPS or grain not in GRAINS:
            raise ValueError(f"cannot group by {group!r} at {grain!r}")
        index = GROUPS.index(group)
        sums: dict[str, dict[str, Any]] = {}
        legacy = await self._legacy_refs() if key_ref is not None else {}
        for _, dims, metric, value in await self._cells(grain, since):
            if not _of_key(dims, key_name, key_ref, legacy):
                continue
            name = dims[index]
            entry = sums.setdefault(name, {"name": name, **dict.fromkeys(METRICS, 0)})
            entry[metric] += value if metric == "latency_ms_sum" else int(value)
        return sorted(sums.values(), key=lambda e: -e["requests"])

    # -- rows from before key refs ----------------------------------------------------------

    async def adopt_refs(self, refs: dict[str, str]) -> None:
        """The first instance of a version that keeps refs records which key
        had each name then: rows and cells written before take their ref from
        it. Later starts (renames since, new keys) leave it as it is."""
        flat = [part for pair in refs.items() for part in pair]
        keys = (self._key("refs_adopted"), self._key("legacy_refs"))
        try:
            await self.link.call(lambda: self.link.client.eval(_ADOPT, 2, *keys, *flat))
        except StateUnavailable as exc:  # tried again at the next start
            log.warning("usage rows from before key refs not adopted yet: %s", exc)

    async def _legacy_refs(self) -> dict[str, str]:
        found = await self.link.call(lambda: self.link.client.hgetall(self._key("legacy_refs")))
        return {k.decode(): v.decode() for k, v in found.items()}
