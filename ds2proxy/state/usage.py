"""The usage store: one row per request plus per-minute/hour/day rollups.

:class:`UsageStore` is the interface the rest of ds2proxy uses, so a shared
store for several instances can replace the embedded one. :class:`SQLiteUsage`
keeps everything in one SQLite file, owned by a single writer thread: the
event loop only puts rows on a queue (a few microseconds), the thread writes
them in batches, and reads run on the same thread after the rows queued
before them, so a read always sees every request that ended before it.
Retention: raw rows and minute rollups ``raw_days``, hour rollups
``hourly_days``, day rollups ten times that.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .usage_migrations import add_ref_columns, adopt_refs, import_legacy

log = logging.getLogger("ds2proxy.usage")

GRAINS = {"minute": 60, "hour": 3600, "day": 86400}
ROW_FIELDS = ("time", "request_id", "key_name", "family", "route", "method", "model",
              "native_model", "account", "status", "error_code", "error_message", "latency_ms",
              "ttfb_ms", "prompt_tokens", "completion_tokens", "reasoning_tokens", "tool_calls",
              "stream", "request_body", "served_by", "key_ref")
# A page of the request log leaves out kept bodies (up to a megabyte each):
# one row's details carry its body.
LISTED = ("id", *(f for f in ROW_FIELDS if f != "request_body"))
FILTERS = ("key_name", "model", "status", "account", "family", "request_id", "key_ref")
GROUPS = ("key_name", "model", "account", "family")
_BATCH = 1000
MAX_HELD = 100_000  # rows kept while the file refuses writes
_PRUNE_EVERY = 600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
  id INTEGER PRIMARY KEY, time REAL NOT NULL, request_id TEXT, key_name TEXT, family TEXT,
  route TEXT, method TEXT, model TEXT, native_model TEXT, account TEXT, status INTEGER,
  error_code TEXT, error_message TEXT, latency_ms REAL, ttfb_ms REAL, prompt_tokens INTEGER,
  completion_tokens INTEGER, reasoning_tokens INTEGER, tool_calls INTEGER, stream INTEGER,
  request_body TEXT, served_by TEXT, key_ref TEXT);
CREATE INDEX IF NOT EXISTS requests_time ON requests(time);
CREATE INDEX IF NOT EXISTS requests_request_id ON requests(request_id);
CREATE TABLE IF NOT EXISTS rollups (
  grain TEXT NOT NULL, bucket INTEGER NOT NULL, key_name TEXT NOT NULL, model TEXT NOT NULL,
  account TEXT NOT NULL, family TEXT NOT NULL, requests INTEGER NOT NULL, errors INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
  reasoning_tokens INTEGER NOT NULL, latency_ms_sum REAL NOT NULL, key_ref TEXT,
  PRIMARY KEY (grain, bucket, key_ref, key_name, model, account, family));
"""
# One index per request-log filter (a row's id rides along in each, so a
# filtered page is read newest first straight from its index), and two
# partial ones of the failed rows (their WHERE is the "errors" filter's, word
# for word): newest first, and by key, so "this key's errors" reads only
# that key's failures.
FAILED = "(status >= 400 OR error_code != '')"
FILTER_INDEXES = {
    **{f"requests_{name}": f"requests({name})" for name in FILTERS if name != "request_id"},
    "requests_failed": f"requests(id) WHERE {FAILED}",
    "requests_failed_keys": f"requests(key_name, model, account, family) WHERE {FAILED}",
}
_UPSERT = """
INSERT INTO rollups (grain, bucket, key_name, model, account, family, key_ref, requests, errors,
  prompt_tokens, completion_tokens, reasoning_tokens, latency_ms_sum)
VALUES (?,?,?,?,?,?,?,1,?,?,?,?,?)
ON CONFLICT (grain, bucket, key_ref, key_name, model, account, family) DO UPDATE SET
  requests = requests + 1, errors = errors + excluded.errors,
  prompt_tokens = prompt_tokens + excluded.prompt_tokens,
  completion_tokens = completion_tokens + excluded.completion_tokens,
  reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
  latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum
"""


class UsageStore(Protocol):
    """What ds2proxy needs from a usage store."""

    def record(self, row: dict[str, Any]) -> None: ...
    def retain(self, raw_days: int, hourly_days: int) -> None: ...
    async def flush(self) -> None: ...
    def release_memory(self) -> None:
        """Drop what the store caches in the process (a drained burst)."""
    async def requests(self, filters: dict[str, Any], limit: int, offset: int
                       ) -> tuple[list[dict[str, Any]], int]:
        """A page of rows (their ``LISTED`` fields), newest first, and the total."""
    async def request(self, row_id: int) -> dict[str, Any] | None: ...
    async def series(self, grain: str, since: float, key_name: str | None = None,
                     key_ref: str | None = None) -> list[dict[str, Any]]: ...
    async def totals(self, group: str, grain: str, since: float,
                     key_name: str | None = None, key_ref: str | None = None
                     ) -> list[dict[str, Any]]: ...
    async def adopt_refs(self, refs: dict[str, str]) -> None:
        """Rows and rollups recorded before they kept the key's ref: given the
        ref of the key ``refs`` maps their name to (once; the rest get none)."""
    async def close(self) -> None: ...


def _rollup_rows(row: dict[str, Any]) -> list[tuple]:
    failed = int(row["status"] >= 400 or bool(row["error_code"]))
    dims = (row["key_name"], row["model"], row["account"], row["family"], row["key_ref"] or "")
    nums = (failed, row["prompt_tokens"], row["completion_tokens"], row["reasoning_tokens"],
            row["latency_ms"])
    return [(grain, int(row["time"] // size) * size, *dims, *nums)
            for grain, size in GRAINS.items()]


def _of_key(key_name: str | None, key_ref: str | None) -> tuple[str, list[Any]]:
    """The rollups' condition for one key's cells: by ref (the key whatever
    it was named), else by the name recorded."""
    if key_ref is not None:
        return "AND key_ref = ?", [key_ref]
    return ("AND key_name = ?", [key_name]) if key_name is not None else ("", [])


def _source(filters: dict[str, Any]) -> str:
    """The table, pinned to the key's-failures index for one key's errors:
    the planner's sampled statistics took the key's index, counting every
    row of the key (0.4 s for a busy key of a two-million-row log)."""
    if filters.get("errors") and filters.get("key_name") not in (None, ""):
        return "requests INDEXED BY requests_failed_keys"
    return "requests"


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    parts, args = [], []
    for name in FILTERS:
        value = filters.get(name)
        if value not in (None, ""):
            parts.append(f"{name} = ?")
            args.append(value)
    if filters.get("errors"):
        parts.append(FAILED)
    return (" WHERE " + " AND ".join(parts)) if parts else "", args


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
        self._stalled = False
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
        self._queue.put(("job", job, future, loop))
        return await future

    async def flush(self) -> None:
        await self._call(lambda db: None)

    async def requests(self, filters: dict[str, Any], limit: int, offset: int
                       ) -> tuple[list[dict[str, Any]], int]:
        where, args = _where(filters)
        source = _source(filters)

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
        extra, args = _of_key(key_name, key_ref)
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
        of_key, key_args = _of_key(key_name, key_ref)
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
        except sqlite3.OperationalError as exc:  # a locked file: the next start
            log.warning("usage store: rows from before key refs not adopted yet: %s", exc)

    async def close(self) -> None:
        await self.flush()
        self._queue.put(("stop",))
        await asyncio.to_thread(self._thread.join)

    # -- the writer thread ---------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        fresh = self.path != ":memory:" and not os.path.exists(self.path)
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
        if fresh:
            os.chmod(self.path, 0o600)
        db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        db.execute("PRAGMA analysis_limit = 1000")
        columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
        if "served_by" not in columns:  # a store written before routes existed
            db.execute("ALTER TABLE requests ADD COLUMN served_by TEXT")
        add_ref_columns(db, columns, SCHEMA)
        if self.legacy and os.path.isfile(self.legacy):
            import_legacy(db, self.legacy, ROW_FIELDS)
        _add_filter_indexes(db)
        return db

    def _run(self) -> None:
        try:
            db = self._open()
        except BaseException as exc:  # reported to the constructor
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                items = [self._queue.get()]
                while len(items) < _BATCH:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if not self._handle(db, items):
                    return
                if time.monotonic() - self._pruned_at > _PRUNE_EVERY:
                    self._pruned_at = time.monotonic()
                    try:
                        self._prune(db)
                    except sqlite3.Error as exc:  # a locked file: next time
                        log.warning("usage store: old rows not pruned: %s", exc)
        finally:
            db.close()

    def _handle(self, db: sqlite3.Connection, items: list[tuple]) -> bool:
        rows = [*self._held, *(item[1] for item in items if item[0] == "row")]
        if rows:
            held = self._write(db, rows)
            if len(held) > MAX_HELD:
                log.error("usage store: %d rows the file refused are dropped (the oldest)",
                          len(held) - MAX_HELD)
            self._held = held[-MAX_HELD:]
        for item in items:
            if item[0] == "job":
                _, job, future, loop = item
                self._answer(db, job, future, loop)
        if any(item[0] == "shrink" for item in items):
            db.execute("PRAGMA shrink_memory")
        return not any(item[0] == "stop" for item in items)

    def _write(self, db: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write ``rows``; those to try again with the next batch (the file
        refused them: locked past its timeout, read-only, full)."""
        placeholders = ",".join("?" * len(ROW_FIELDS))
        try:
            with db:
                db.executemany(f"INSERT INTO requests ({','.join(ROW_FIELDS)}) "
                               f"VALUES ({placeholders})",
                               [tuple(r[f] for f in ROW_FIELDS) for r in rows])
                db.executemany(_UPSERT, [u for r in rows for u in _rollup_rows(r)])
        except sqlite3.OperationalError as exc:
            if not self._stalled:
                log.warning("usage store: the file refused %d rows (%s); they are kept and "
                            "written with the next ones", len(rows), exc)
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
            log.warning("usage store: the file is written again")
        return []

    @staticmethod
    def _answer(db: sqlite3.Connection, job: Callable, future: asyncio.Future,
                loop: asyncio.AbstractEventLoop) -> None:
        try:
            result, error = job(db), None
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

    def _prune(self, db: sqlite3.Connection) -> None:
        now = time.time()
        raw_cut = now - self.raw_days * 86400
        with db:
            db.execute("DELETE FROM requests WHERE time < ?", (raw_cut,))
            db.execute("DELETE FROM rollups WHERE grain = 'minute' AND bucket < ?", (raw_cut,))
            db.execute("DELETE FROM rollups WHERE grain = 'hour' AND bucket < ?",
                       (now - self.hourly_days * 86400,))
            db.execute("DELETE FROM rollups WHERE grain = 'day' AND bucket < ?",
                       (now - self.hourly_days * 10 * 86400,))
        db.execute("PRAGMA optimize")  # fresh planner statistics as the log grows


def _add_filter_indexes(db: sqlite3.Connection) -> None:
    """The request-log filters' indexes, made once for a file that predates
    them (a minute or so for millions of rows, at start, off the loop)."""
    present = {name for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    missing = [name for name in FILTER_INDEXES if name not in present]
    if not missing:
        return
    if db.execute("SELECT 1 FROM requests LIMIT 1").fetchone() is not None:
        log.info("indexing the request log for its filters (%s)", ", ".join(missing))
    with db:
        for name in missing:
            db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {FILTER_INDEXES[name]}")
    # The planner's statistics (sampled: quick on any size), without which
    # it takes the key's index over the key's-failures one.
    db.execute("ANALYZE")
