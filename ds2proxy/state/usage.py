"""The usage store: one row per request plus per-minute/hour/day rollups.

:class:`UsageStore` is the interface the rest of ds2proxy uses, so a shared
store for several instances can replace the embedded one. :class:`SQLiteUsage`
keeps everything in one SQLite file, owned by a single writer thread: the
event loop only puts rows on a queue (a few microseconds), the thread writes
them in batches, and reads run on the same thread after the rows queued
before them, so a read always sees every request that ended before it.
Retention: raw rows and minute rollups ``raw_days``, hour rollups
``hourly_days``, day rollups ten times that, pruned a batch at a time
between the writes (:mod:`.usage_prune`). Rows a locked, read-only or full
file refuses are kept and tried again every ``RETRY_SECONDS`` (logged once);
meanwhile reads answer from what the file has, and a read the file refuses
(another program's exclusive lock) is a 503, never a wait. A file locked
when the store opens is opened again every ``RETRY_SECONDS``, its rows held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .errors import StateUnavailable
from .usage_api import UsageStore
from .usage_migrations import adopt_refs
from .usage_open import busy, open_usage_file, refusal
from .usage_prune import cut_offs, prune_steps
from .usage_schema import (FILTERS, GRAINS, GROUPS, LISTED, ROW_FIELDS,
                           SCHEMA, UPSERT, key_condition, rollup_rows, table_of, where_clause)

__all__ = ["FILTERS", "GRAINS", "GROUPS", "LISTED", "ROW_FIELDS", "SCHEMA", "SQLiteUsage",
           "UsageStore"]

log = logging.getLogger("ds2proxy.usage")

_BATCH = 1000
MAX_HELD = 100_000  # rows kept while the file refuses writes
HELD_BODY_CHARS = 64 * 1024 * 1024  # of their request bodies (usage.log_bodies)
_PRUNE_EVERY = 600.0
# How long a write waits for the file's lock: long enough for the state
# file's other connection (short transactions), short enough not to hold the
# reads queued behind it; while the file refuses writes, retries only try.
WRITE_WAIT_MS, RETRY_WAIT_MS, CLOSING_WAIT_MS = 500, 20, 5000
OPEN_WAIT_SECONDS = 10.0  # the first start's wait for the file; then it is tried in the background
RETRY_SECONDS = 2.0  # rows the file refused are tried again this often

class SQLiteUsage:
    """The embedded store (``path`` ":memory:" keeps it for the process only)."""

    def __init__(self, path: str, *, raw_days: int = 7, hourly_days: int = 90,
                 legacy: str | None = None) -> None:
        self.path = path
        self.legacy = legacy
        self.raw_days, self.hourly_days = raw_days, hourly_days
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.rows_written = 0
        self._pruned_at = -math.inf  # monotonic: a clock set back never stalls pruning
        self._held: list[dict[str, Any]] = []  # rows the file refused, tried again
        self._retry_at = 0.0
        self._dropped = 0  # rows past MAX_HELD while the file refuses writes
        self._shed = 0  # bodies past HELD_BODY_CHARS, of rows held meanwhile
        self._stalled = False
        self._told = False  # the refusal was logged
        self._pruning: Iterator[int] | None = None  # the prune under way, a batch a turn
        self._closing = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ds2proxy-usage", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    # -- the loop's side -------------------------------------------------------------

    def record(self, row: dict[str, Any]) -> None:
        self._queue.put(("row", row))

    def retain(self, raw_days: int, hourly_days: int) -> None:
        """New retention (a config change): rows past it go at the writer's next turn."""
        self.raw_days, self.hourly_days = raw_days, hourly_days
        self._pruned_at = -math.inf  # monotonic: a clock set back never stalls pruning
        self._queue.put(("wake",))

    def release_memory(self) -> None:
        """Empty SQLite's page cache (at the writer's next turn). It fills as
        the log is written and read, up to its size; emptied after each
        burst, the next burst does not find the process larger."""
        self._queue.put(("shrink",))

    async def _call(self, job: Callable[[sqlite3.Connection], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._closing:
            if self._closed:  # the writer has ended: nobody would answer
                raise StateUnavailable("the usage store is closed (the server is stopping)")
            self._queue.put(("job", job, future, loop))
        return await future

    async def flush(self) -> None:
        await self._call(lambda db: None)

    async def requests(self, filters: dict[str, Any], limit: int, offset: int
                       ) -> tuple[list[dict[str, Any]], int]:
        where, args = where_clause(filters)
        source = table_of(filters)

        def job(db: sqlite3.Connection) -> tuple[list[dict[str, Any]], int]:
            total = db.execute(f"SELECT COUNT(*) FROM {source}{where}", args).fetchone()[0]
            rows = db.execute(f"SELECT {','.join(LISTED)} FROM {source}{where} "
                              "ORDER BY id DESC LIMIT ? OFFSET ?",
                              [*args, limit, offset]).fetchall()
            return [dict(r) for r in rows], total

        return await self._call(job)

    async def request(self, row_id: int) -> dict[str, Any] | None:
        def job(db: sqlite3.Connection) -> dict[str, Any] | None:
            row = db.execute("SELECT * FROM requests WHERE id = ?", (row_id,)).fetchone()
            return dict(row) if row else None

        return await self._call(job)

    async def series(self, grain: str, since: float, key_name: str | None = None,
                     key_ref: str | None = None) -> list[dict[str, Any]]:
        """Per-bucket sums since ``since`` (overall, or one key's)."""
        extra, args = key_condition(key_name, key_ref)
        sql = ("SELECT bucket, SUM(requests) AS requests, SUM(errors) AS errors, "
               "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS "
               "completion_tokens, SUM(reasoning_tokens) AS reasoning_tokens "
               f"FROM rollups WHERE grain = ? AND bucket >= ? {extra} "
               "GROUP BY bucket ORDER BY bucket")
        return await self._call(lambda db: [dict(r) for r in db.execute(
            sql, [grain, int(since), *args]).fetchall()])

    async def totals(self, group: str, grain: str, since: float,
                     key_name: str | None = None, key_ref: str | None = None
                     ) -> list[dict[str, Any]]:
        """Sums per key, model, account or family since ``since`` (of one key's
        requests only, given ``key_name`` or ``key_ref``)."""
        if group not in GROUPS or grain not in GRAINS:
            raise ValueError(f"cannot group by {group!r} at {grain!r}")
        of_key, key_args = key_condition(key_name, key_ref)
        sql = (f"SELECT {group} AS name, SUM(requests) AS requests, SUM(errors) AS errors, "
               "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS "
               "completion_tokens, SUM(reasoning_tokens) AS reasoning_tokens, "
               "SUM(latency_ms_sum) AS latency_ms_sum FROM rollups "
               f"WHERE grain = ? AND bucket >= ? {of_key} GROUP BY {group} "
               "ORDER BY requests DESC")
        args: list[Any] = [grain, int(since), *key_args]
        return await self._call(lambda db: [dict(r) for r in db.execute(sql, args).fetchall()])

    async def adopt_refs(self, refs: dict[str, str]) -> None:
        try:
            await self._call(lambda db: adopt_refs(db, refs))
        except (sqlite3.OperationalError, StateUnavailable) as exc:  # locked: the next start
            log.warning("usage store: rows from before key refs not adopted yet: %s", exc)

    async def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(StateUnavailable):  # a file still locked: rows held
            await self.flush()
        self._queue.put(("stop",))
        await asyncio.to_thread(self._thread.join)

    # -- the writer thread ---------------------------------------------------------------

    def _open(self, wait_s: float) -> sqlite3.Connection:
        db = open_usage_file(self.path, self.legacy, wait_s)
        db.execute(f"PRAGMA busy_timeout = {WRITE_WAIT_MS}")  # the start waited longer
        return db

    def _run(self) -> None:
        try:
            db: sqlite3.Connection | None = self._open(OPEN_WAIT_SECONDS)
        except BaseException as exc:
            if not busy(exc):  # reported to the constructor
                self._error = exc
                self._ready.set()
                return
            log.warning("usage store: another program holds the file locked (%s); rows are "
                        "kept and opening it is tried again every %.0f s", exc, RETRY_SECONDS)
            db = None
        self._ready.set()
        db = db or self._open_later()
        if db is None:
            self._end()
            return
        try:
            while self._handle(db, self._take()):
                self._tidy(db)
            self._last_try(db)
        finally:
            db.close()
            self._end()

    def _open_later(self) -> sqlite3.Connection | None:
        """Hold rows (bounded) and refuse reads until the file opens; None:
        the store closed first (one longer try, then the rows are named lost)."""
        locked = refusal(None)
        self._retry_at = time.monotonic() + RETRY_SECONDS
        while True:
            items = self._take(max(0.0, self._retry_at - time.monotonic()))
            self._held.extend(item[1] for item in items if item[0] == "row")
            self._bound_held()
            for item in items:
                if item[0] == "job":
                    self._answer(None, lambda db: _raise(locked), *item[2:])
            stopping = any(item[0] == "stop" for item in items)
            if stopping or time.monotonic() >= self._retry_at:
                try:
                    db = self._open(CLOSING_WAIT_MS / 1000 if stopping else RETRY_WAIT_MS / 1000)
                except (OSError, sqlite3.Error):
                    if stopping:
                        log.error("usage store: %d rows are lost at close: the file stayed "
                                  "locked", len(self._held))
                        return None
                    self._retry_at = time.monotonic() + RETRY_SECONDS
                    continue
                log.warning("usage store: the file is open now; %d rows kept meanwhile are "
                            "written", len(self._held))
                self._retry_at = 0.0
                if stopping:
                    self._queue.put(("stop",))
                return db

    def _end(self) -> None:
        """No read waits for an ended writer (closed, or killed by a bug)."""
        with self._closing:
            self._closed = True
        ended = StateUnavailable("the usage store is closed (the server is stopping)")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item[0] == "job":
                self._answer(None, lambda db: _raise(ended), *item[2:])

    def _take(self, wait: float | None = None) -> list[tuple]:
        """Up to a batch of queued items, waiting for the first only until
        something else is due: held rows' retry, the next prune batch."""
        if wait is None and self._held:
            wait = max(0.0, self._retry_at - time.monotonic())
        elif wait is None:
            wait = 0.0 if self._pruning is not None else None
        items: list[tuple] = []
        try:
            items.append(self._queue.get(timeout=wait) if wait != 0 else self._queue.get_nowait())
            while len(items) < _BATCH:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _handle(self, db: sqlite3.Connection, items: list[tuple]) -> bool:
        """Write the rows, then answer the reads: they see every row queued
        before them (while the file refuses writes, what it has: each try
        then only tries, it does not wait)."""
        self._held.extend(item[1] for item in items if item[0] == "row")
        self._try_held(db)
        for item in items:
            if item[0] == "job":
                self._answer(db, *item[1:])
        if any(item[0] == "shrink" for item in items):
            db.execute("PRAGMA shrink_memory")
        return not any(item[0] == "stop" for item in items)

    def _try_held(self, db: sqlite3.Connection) -> None:
        """Write the rows held; those the file refuses wait (the newest
        ``MAX_HELD``) for the next try."""
        if not self._held:
            return
        self._held = self._write(db, self._held)
        self._bound_held()
        self._retry_at = time.monotonic() + RETRY_SECONDS

    def _bound_held(self) -> None:
        """The newest ``MAX_HELD`` rows are kept, their bodies bounded too."""
        if len(self._held) > MAX_HELD:
            if not self._dropped:  # once: the rest are counted when the file is back
                log.error("usage store: more than %d rows the file refused are waiting; the "
                          "oldest are dropped", MAX_HELD)
            self._dropped += len(self._held) - MAX_HELD
            del self._held[:-MAX_HELD]
        self._shed_bodies()

    def _shed_bodies(self) -> None:
        """Rows held keep at most ``HELD_BODY_CHARS`` of request bodies, the
        newest first: a long outage with usage.log_bodies held up to a
        megabyte per row, 100,000 rows, in memory. Older rows are kept
        without their body (their usage still counts)."""
        budget = HELD_BODY_CHARS
        for n in range(len(self._held) - 1, -1, -1):
            body = self._held[n].get("request_body") or ""
            if len(body) <= budget:
                budget -= len(body)
                continue
            if not self._shed:
                log.error("usage store: rows the file refused hold more than %d characters "
                          "of request bodies; the oldest are kept without theirs",
                          HELD_BODY_CHARS)
            self._shed += 1
            self._held[n] = {**self._held[n], "request_body": ""}

    def _last_try(self, db: sqlite3.Connection) -> None:
        """At close: rows still refused get one longer wait, then are named lost."""
        if self._held:
            db.execute(f"PRAGMA busy_timeout = {CLOSING_WAIT_MS}")
            self._try_held(db)
        if self._held:
            log.error("usage store: %d rows the file refused are lost at close", len(self._held))

    def _tidy(self, db: sqlite3.Connection) -> None:
        """Start a prune when one is due; run its next batch unless the file
        refuses writes."""
        if time.monotonic() - self._pruned_at > _PRUNE_EVERY:
            self._pruned_at = time.monotonic()
            self._pruning = prune_steps(db, cut_offs(time.time(), self.raw_days,
                                                     self.hourly_days))
        if self._pruning is None or self._stalled:
            return
        try:
            next(self._pruning)
        except StopIteration:
            self._pruning = None
        except sqlite3.Error as exc:  # a locked file: next time
            self._pruning = None
            log.warning("usage store: old rows not pruned: %s", exc)

    def _write(self, db: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write ``rows``; those to try again with the next batch (the file
        refused them: locked, read-only, full)."""
        placeholders = ",".join("?" * len(ROW_FIELDS))
        try:
            with db:
                db.executemany(f"INSERT INTO requests ({','.join(ROW_FIELDS)}) "
                               f"VALUES ({placeholders})",
                               [tuple(r[f] for f in ROW_FIELDS) for r in rows])
                db.executemany(UPSERT, [u for r in rows for u in rollup_rows(r)])
        except sqlite3.OperationalError as exc:
            # A lock a retry finds gone was most likely the file's other
            # connection writing something big: named only if it outlasts one.
            if not self._told and (self._stalled or not busy(exc)):
                self._told = True
                log.warning("usage store: the file refused %d rows (%s); they are kept and "
                            "tried again every %.0f s", len(rows), exc, RETRY_SECONDS)
            if not self._stalled:  # retries only try: each holds the reads behind it
                db.execute(f"PRAGMA busy_timeout = {RETRY_WAIT_MS}")
            self._stalled = True
            return rows
        except Exception as exc:
            # The writer thread must outlive a bad row (an integer SQLite
            # cannot hold, a row missing a field): were it to end, every
            # later read and flush would wait for it forever. Only that row
            # is lost: the others of its batch are written one by one.
            if len(rows) > 1:
                return [held for row in rows for held in self._write(db, [row])]
            log.error("usage store: a row could not be written: %s",
                      f"{type(exc).__name__}: {exc}")
            return []
        self.rows_written += len(rows)
        if self._stalled:
            self._stalled = False
            db.execute(f"PRAGMA busy_timeout = {WRITE_WAIT_MS}")
            lost = f" ({self._dropped} rows it refused were dropped)" if self._dropped else ""
            lost += f" ({self._shed} bodies were not kept)" if self._shed else ""
            if self._told:
                log.warning("usage store: the file is written again%s", lost)
            self._dropped = self._shed = 0
            self._told = False
        return []

    def _answer(self, db: sqlite3.Connection | None, job: Callable, future: asyncio.Future,
                loop: asyncio.AbstractEventLoop) -> None:
        try:
            result, error = job(db), None
        except sqlite3.OperationalError as exc:
            result, error = None, refusal(exc)
        except Exception as exc:
            result, error = None, exc
        if loop.is_closed():
            return

        def settle() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        loop.call_soon_threadsafe(settle)


def _raise(exc: Exception) -> Any:
    raise exc
