"""Where an ended request goes: limits, metrics, the request log line, the store.

:meth:`UsageRecorder.finish` is called once per API request, from the one
place a request ends (:func:`ds2proxy.plugin_api.wrap_handler`). Everything
it does on the event loop is cheap: counters, one log record, one queue put;
the SQLite writes happen on the store's own thread.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .limits import DAY, KeyLimiter
from .metrics import Metrics
from .observe_settings import UsageSettings
from .request_record import RequestRecord
from .state.usage import SQLiteUsage, UsageStore

if TYPE_CHECKING:
    from .core import Core

log = logging.getLogger("ds2proxy.requests")


def usage_db_path(settings: UsageSettings, config_path: Path | None) -> str:
    """``usage.db_path`` (relative to the config's folder), else beside the
    config file, else in memory when the config has no file."""
    if settings.db_path:
        path = Path(settings.db_path).expanduser()
        if not path.is_absolute() and config_path is not None:
            path = config_path.parent / path
        return str(path)
    if config_path is None:
        return ":memory:"
    return str(config_path.with_name(config_path.stem + ".usage.db"))


def text_line(r: RequestRecord) -> str:
    """The concise per-request line of the text log format."""
    ttfb = f" ttfb={r.ttfb_ms:.0f}ms" if r.ttfb_ms is not None else ""
    err = f" error={r.error_code}" if r.error_code else ""
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

    async def open(self) -> None:
        """Open the store and seed today's token use per key from it."""
        settings = self.core.config.usage
        if not settings.enabled:
            return
        path = usage_db_path(settings, self.core.store.path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Opening waits for the writer thread's schema check: off the loop.
        self.store = await asyncio.to_thread(SQLiteUsage, path,
                                             raw_days=settings.retention_raw_days,
                                             hourly_days=settings.retention_hourly_days)
        today = int(self.limiter.clock() // DAY) * DAY
        for row in await self.store.totals("key_name", "day", today):
            used = (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0)
            self.limiter.seed_tokens(row["name"], used)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None

    def finish(self, record: RequestRecord) -> None:
        """Record one ended request (called exactly once per request)."""
        self.recorded += 1
        if record.key_name:
            self.limiter.add_tokens(record.key_name, record.total_tokens)
        cfg = self.core.config
        if cfg.metrics.enabled:
            self.metrics.observe(record)
        fields = record.fields()
        if not cfg.usage.log_bodies:
            fields["request_body"] = ""
        if log.isEnabledFor(logging.INFO):
            log.info("%s", text_line(record), extra={"request": fields})
        if self.store is not None and cfg.usage.enabled:
            self.store.record(fields)
