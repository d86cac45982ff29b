"""Where an ended request goes: limits, metrics, the request log line, the store.

:meth:`UsageRecorder.finish` is called once per API request, from the one
place a request ends (:func:`ds2proxy.plugin_api.wrap_handler`). Everything
it does on the event loop is cheap: counters, one log record, one queue put;
the store's writes happen off the loop (the SQLite writer thread, or the
Redis store's background task, which buffers rows while Redis is away).
A turn whose client received no usage leaves its count for after the
response (:class:`~ds2proxy.request_record.PendingUsage`): a short one is
counted here, a long one in a thread, and the request recorded after it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .limits import DAY, KeyLimiter, day_of
from .metrics import Metrics
from .request_record import PendingUsage, RequestRecord, fold_usage
from .state.usage import UsageStore

if TYPE_CHECKING:
    from .config import Config
    from .core import Core

log = logging.getLogger("ds2proxy.requests")

# Today's tokens per key, by the key's ref (a hash of its secret): {"day", "tokens"}.
KEY_TOKENS = "key_tokens"

# A usage count of more characters than this runs in a thread (one long
# word with no safe boundary takes milliseconds to encode).
OFF_LOOP_USAGE_CHARS = 4096


def text_line(r: RequestRecord) -> str:
    """The concise per-request line of the text log format."""
    ttfb = f" ttfb={r.ttfb_ms:.0f}ms" if r.ttfb_ms is not None else ""
    err = f" error={r.error_code}" if r.error_code else ""
    err += f" served_by={r.served_by}" if r.served_by not in ("", "pool") else ""
    return (f"{r.method} {r.route} {r.status} {r.latency_ms:.0f}ms{ttfb} family={r.family} "
            f"key_name={r.key_name or '-'} model={r.model or '-'} account={r.account or '-'} "
            f"tokens={r.prompt_tokens}+{r.completion_tokens}{err} "
            f"stream={'yes' if r.stream else 'no'} id={r.request_id}")


class UsageRecorder:
    def __init__(self, core: Core, limiter: KeyLimiter, metrics: Metrics) -> None:
        self.core = core
        self.limiter = limiter
        self.metrics = metrics
        self.store: UsageStore | None = None
        self.recorded = 0
        self._counting: set[asyncio.Task] = set()  # records waiting for their count
        core.monitor.trimmer.on_drain(self._release_memory)

    async def open(self) -> None:
        """Open the store (with usage.enabled off too: turned on at run time, it
        records at once) and seed today's token use per key."""
        self.store = await self.core.backend.open_usage(self.core.config.usage)
        await self.store.adopt_refs({k.name: k.ref for k in self.core.config.keys})
        self.core.store.subscribe(self._configure)
        if self.core.backend.shared:
            return  # today's tokens per key are counted in the shared store
        kept = await self.core.state.load(KEY_TOKENS)
        today = day_of(self.limiter.clock())
        for ref, entry in kept.items():
            if entry.get("day") == today:
                self.limiter.seed_tokens(ref, int(entry.get("tokens") or 0))
            else:
                self.core.state.put(KEY_TOKENS, ref, None)  # an earlier day's
        if not kept:
            await self._seed_from_rows(today * DAY)

    async def _seed_from_rows(self, today: float) -> None:
        """A state file from before the per-key record: today's rollups by name."""
        assert self.store is not None
        keys = {k.name: k for k in self.core.config.keys}
        for row in await self.store.totals("key_name", "day", today):
            key = keys.get(row["name"])
            if key is not None:
                used = (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0)
                self.limiter.seed_tokens(key.ref, used)

    def _configure(self, cfg: Config) -> None:
        """Retention is a live setting: a shortened one prunes without a restart."""
        if self.store is not None:
            self.store.retain(cfg.usage.retention_raw_days, cfg.usage.retention_hourly_days)

    def _release_memory(self) -> None:
        if self.store is not None:
            self.store.release_memory()

    async def close(self) -> None:
        await self.counted()
        if self.store is not None:
            await self.store.close()
            self.store = None

    def finish(self, record: RequestRecord) -> None:
        """Record one ended request (called exactly once per request), once
        its usage is counted if that was left for after the response."""
        pending, record.pending_usage = record.pending_usage, None
        if pending is None:
            self._record(record)
        elif pending.chars <= OFF_LOOP_USAGE_CHARS:
            fold_usage(record, pending.count())
            self._record(record)
        else:
            task = asyncio.get_running_loop().create_task(self._count_then_record(record, pending))
            self._counting.add(task)
            task.add_done_callback(self._counting.discard)

    async def _count_then_record(self, record: RequestRecord, pending: PendingUsage) -> None:
        try:
            fold_usage(record, await asyncio.to_thread(pending.count))
        except Exception:
            log.exception("counting the usage of %s failed", record.request_id)
        self._record(record)

    async def counted(self) -> None:
        """Wait until every request left counting its usage is recorded."""
        while self._counting:
            await asyncio.gather(*self._counting)

    def _charge(self, ref: str, tokens: int) -> None:
        """Today's tokens of the key ``ref``, kept under the ref in the state
        file too (a write queued, never awaited): a restart resumes the day's
        count whatever the key is named and whether usage is recorded."""
        self.limiter.add_tokens(ref, tokens)
        if tokens > 0 and not self.core.backend.shared:
            self.core.state.put(KEY_TOKENS, ref, {"day": day_of(self.limiter.clock()),
                                                  "tokens": self.limiter.tokens_today(ref)})

    def _record(self, record: RequestRecord) -> None:
        self.recorded += 1
        if record.key_ref:
            self.limiter.release(record.key_ref, record.reserved_tokens)
            self._charge(record.key_ref, record.total_tokens)
        cfg = self.core.config
        if cfg.metrics.enabled:
            self.metrics.observe(record)
        fields = record.fields()
        if not cfg.usage.log_bodies:
            fields["request_body"] = ""
        if log.isEnabledFor(logging.INFO):
            log.info("%s", text_line(record), extra={"request": fields})
        if self.store is not None and cfg.usage.enabled:
            self.store.record(fields)  # with the key's ref: its page follows its renames
