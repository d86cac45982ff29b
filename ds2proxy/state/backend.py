"""The state backend: every store the rest of ds2proxy uses, from one place.

``embedded`` (the default): records and usage in ONE SQLite file beside the
config (``<config>.state.sqlite``; a former ``<config>.usage.db`` is imported
into it once), counters and pacing in memory. ``redis``: every store on the
instance's :class:`RedisLink`, shared by all instances.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..observe_settings import UsageSettings
from .counters import KeyCounters
from .pace_gate import PaceGate
from ..plugin_api.contract import StoredResponses
from .sqlite import SQLiteStore
from .store import StateStore, legacy_usage_path, open_store, state_file
from .usage import SQLiteUsage, UsageStore

MEMORY = ":memory:"
log = logging.getLogger("ds2proxy.state")


@dataclass
class StateBackend:
    records: StateStore
    path: Path | None = None            # the embedded state file
    config_path: Path | None = None
    link: object | None = None          # RedisLink when shared
    counters: KeyCounters | None = None  # shared key counters (None: in-process)
    pacing: PaceGate | None = None       # shared pacing gate (None: in-process)

    @property
    def shared(self) -> bool:
        return self.link is not None

    def stored_responses(self, ttl: Callable[[], float]) -> StoredResponses | None:
        """Where ``/v1/responses`` keeps what it stores: Redis, or the state
        file (so a restart keeps them); None (no file): the plugin's memory."""
        if self.link is not None:
            from .redis_link import RedisLink
            from .responses import RedisResponses

            assert isinstance(self.link, RedisLink)
            return RedisResponses(self.link, ttl)
        if isinstance(self.records, SQLiteStore):
            from .kept_responses import SQLiteResponses

            return SQLiteResponses(self.records, ttl)
        return None

    async def open_usage(self, settings: UsageSettings) -> UsageStore:
        if self.link is not None:
            from .redis_usage import RedisUsage

            return RedisUsage(self.link, raw_days=settings.retention_raw_days,
                              hourly_days=settings.retention_hourly_days)
        path = str(self.path) if self.path is not None else MEMORY
        legacy = None
        if self.path is not None and self.config_path is not None and not settings.db_path:
            legacy = str(legacy_usage_path(self.config_path))
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            return await self._sqlite_usage(path, settings, legacy)
        except (OSError, sqlite3.Error) as exc:
            if path == MEMORY:
                raise
            # As the health records do: a file that cannot be used (a folder,
            # not a database, no permission) is named, not a start-up traceback.
            log.warning("state file %s cannot be used for usage (%s); usage is kept in "
                        "memory only", path, exc)
            return await self._sqlite_usage(MEMORY, settings, None)

    @staticmethod
    async def _sqlite_usage(path: str, settings: UsageSettings, legacy: str | None
                            ) -> UsageStore:
        # Opening waits for the writer thread's schema check: off the loop.
        return await asyncio.to_thread(SQLiteUsage, path,
                                       raw_days=settings.retention_raw_days,
                                       hourly_days=settings.retention_hourly_days,
                                       legacy=legacy)


def open_backend(config_path: Path | None, usage: UsageSettings,
                 link: object | None = None, lease_ttl_seconds: int = 30) -> StateBackend:
    """Embedded stores beside ``config_path``, or Redis ones on ``link`` (a
    key's concurrent slots live ``lease_ttl_seconds`` unless renewed)."""
    if link is None:
        path = state_file(config_path, usage.db_path)
        return StateBackend(open_store(path), path, config_path)
    from .redis_limits import RedisCounters, RedisPaceGate
    from .redis_records import RedisRecords

    return StateBackend(RedisRecords(link), link=link, counters=RedisCounters(link, lease_ttl_seconds),
                        pacing=RedisPaceGate(link))
