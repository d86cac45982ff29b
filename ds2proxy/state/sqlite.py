"""SQLite state records: the ``records`` table of the state file (the usage
tables share the file, see :mod:`ds2proxy.state.usage`), one writer thread,
latest value per key.

``put`` only records the newest value of a key and wakes the writer, so a
burst of changes to one account costs one row write, and the event loop
never waits for the disk. A file that cannot be opened (a folder, not a
database) is logged once; the server keeps running and the state then lives
in memory only. A write the open file refuses (locked by another program,
made read-only, a full disk) is logged once and kept, and tried again with
the next write or after ``RETRY_SECONDS``, so the file catches up when it
can. Once open, a write waits at most ``WRITE_WAIT_MS`` for the file's lock
(``IDLE_WAIT_MS`` while the file refuses writes), so the stored responses
that share the thread are never held behind a lock for long.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("ds2proxy.state")

# The first open waits as long as ever for another program's lock: one it
# cannot take leaves the state in memory for good.
OPEN_TIMEOUT = 10.0
WRITE_WAIT_MS, IDLE_WAIT_MS = 500, 20
RETRY_SECONDS = 2.0
_SCHEMA = ("CREATE TABLE IF NOT EXISTS records (namespace TEXT NOT NULL, key TEXT NOT NULL, "
           "value BLOB NOT NULL, PRIMARY KEY (namespace, key))")


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ds2proxy-state")
        self._conn: sqlite3.Connection | None = None
        self._pending: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._lock = threading.Lock()
        self._scheduled = False
        self._failed = False  # the file cannot be opened: memory only
        self._stalled = False  # the open file refused a write: retried with the next
        self._retry: threading.Timer | None = None
        self._tried = False  # an open was tried already
        self._told = False  # the refusal was logged

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            fresh = not self.path.exists()
            # The start's open waits long; a later one (the first was locked
            # out) no longer than a write, not to hold the thread's other work.
            wait = WRITE_WAIT_MS / 1000 if self._tried else OPEN_TIMEOUT
            self._tried = True
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=wait)
            try:
                if fresh:
                    os.chmod(self.path, 0o600)
                conn.execute(_SCHEMA)
                conn.commit()
                conn.execute(f"PRAGMA busy_timeout = {WRITE_WAIT_MS}")
            except BaseException:
                conn.close()  # not kept half-open: the next call fails alike
                raise
            self._conn = conn
        return self._conn

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The file's one writer thread: other tables of the file use it too."""
        return self._executor

    def connection(self) -> sqlite3.Connection:
        """The open connection (on :attr:`executor`'s thread only)."""
        return self._connect()

    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._load, namespace)

    def _load(self, namespace: str) -> dict[str, dict[str, Any]]:
        try:
            rows = self._connect().execute(
                "SELECT key, value FROM records WHERE namespace = ?", (namespace,)).fetchall()
        except (OSError, sqlite3.Error) as exc:
            if _busy(exc):  # locked past the open's wait: not given up for that
                log.warning("state file %s is locked by another program; %s starts empty",
                            self.path, namespace)
            else:
                self._give_up(exc)
            return {}
        return _decoded(namespace, rows)

    def _give_up(self, exc: BaseException) -> None:
        if not self._failed:
            log.warning("state file %s cannot be used (%s); state is kept in memory only",
                        self.path, exc)
        self._failed = True

    def put(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        with self._lock:
            self._pending[(namespace, key)] = value
        self._schedule(f"{namespace}/{key}")

    def _schedule(self, what: str) -> None:
        """A write of what is pending on the writer thread, unless one is due."""
        with self._lock:
            if self._scheduled or not self._pending:
                return
            self._scheduled = True
        try:
            self._executor.submit(self._write)
        except RuntimeError as exc:  # closed: the server is past its state's end
            log.warning("state file %s is closed; %s not written (%s)", self.path, what, exc)

    def _write(self) -> None:
        with self._lock:
            batch, self._pending, self._scheduled = self._pending, {}, False
        if not batch or self._failed:
            return
        try:
            conn = self._connect()
        except (OSError, sqlite3.Error) as exc:
            if _busy(exc):
                self._keep_for_later(batch, exc)
            else:
                self._give_up(exc)
            return
        rows = _encoded(batch)
        try:
            with conn:
                for namespace, key, doc in rows:
                    if doc is None:
                        conn.execute("DELETE FROM records WHERE namespace = ? AND key = ?",
                                     (namespace, key))
                    else:
                        conn.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
                                     (namespace, key, doc))
        except (OSError, sqlite3.Error) as exc:
            self._keep_for_later(batch, exc)
            return
        if self._stalled:
            self._stalled = False
            conn.execute(f"PRAGMA busy_timeout = {WRITE_WAIT_MS}")
            if self._told:
                log.warning("state file %s is written again", self.path)
            self._told = False

    def _keep_for_later(self, batch: dict[tuple[str, str], dict[str, Any] | None],
                        exc: BaseException) -> None:
        """A write the open file refused (locked past its timeout, read-only,
        full): its changes wait for the next write, newer values first."""
        with self._lock:
            for item, value in batch.items():
                self._pending.setdefault(item, value)
        # A lock a retry finds gone was most likely the file's other
        # connection writing something big: named only if it outlasts one.
        if not self._told and (self._stalled or not _busy(exc)):
            self._told = True
            log.warning("state file %s could not be written (%s); the changes are kept and "
                        "written with the next ones", self.path, exc)
        if not self._stalled and self._conn is not None:
            self._conn.execute(f"PRAGMA busy_timeout = {IDLE_WAIT_MS}")
        self._stalled = True
        # Tried again without waiting for the next change (there may be none).
        if self._retry is not None:
            self._retry.cancel()
        self._retry = threading.Timer(RETRY_SECONDS, self._schedule, ("the kept changes",))
        self._retry.daemon = True
        self._retry.start()

    def watch(self, namespace: str, listener: Any) -> None:
        return None  # one process: nobody else writes

    async def flush(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write)

    async def close(self) -> None:
        await self.flush()

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)
        if self._retry is not None:
            self._retry.cancel()
        if self._pending:
            log.error("state file %s refused %d changes; they are lost at close", self.path,
                      len(self._pending))


def _encoded(batch: dict[tuple[str, str], dict[str, Any] | None]
             ) -> list[tuple[str, str, bytes | None]]:
    """The batch's rows as written (None: deleted). A value JSON cannot hold
    (an integer past 64 bits) loses only itself, logged: raised in the
    transaction, it rolled back every other change of its batch, unlogged."""
    rows = []
    for (namespace, key), value in batch.items():
        try:
            rows.append((namespace, key, None if value is None else orjson.dumps(value)))
        except (TypeError, orjson.JSONEncodeError) as exc:
            log.error("state %s/%s could not be written: %s", namespace, key, exc)
    return rows


def _busy(exc: BaseException) -> bool:
    """Another program holds the file locked (passing), not a file unusable."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY,
                                                         sqlite3.SQLITE_LOCKED)


def _decoded(namespace: str, rows: list[tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
    """The records read back: a value that is not a JSON object (a damaged
    file, another program's row) is left out and named, not raised from the
    start-up that loads it."""
    found = {}
    for key, value in rows:
        try:
            record = orjson.loads(value)
        except (TypeError, orjson.JSONDecodeError):
            record = None
        if isinstance(record, dict):
            found[str(key)] = record
        else:
            log.warning("state %s/%s in the state file is not a JSON object; left out",
                        namespace, key)
    return found
