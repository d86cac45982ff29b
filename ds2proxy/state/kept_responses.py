"""Stored ``/v1/responses`` results in the embedded state file, so a
restart keeps what clients may still read (``GET``), continue
(``previous_response_id``) or delete.

One row per response in the ``responses`` table of the state file, written
and read on the records store's one writer thread (never on the loop). The
owner is the caller's non-secret identity hash: a foreign id looks exactly
like a missing one. ``responses.store_ttl_seconds`` is read on every access,
so a shortened TTL hides older entries at once; ages are wall-clock seconds
(the only clock that survives a restart). Past ``max_entries`` (as in the
in-process store), or past ``max_bytes`` of encoded entries, the oldest go
first (the newest is kept whatever its size), and expired ones leave the
file at most a minute after they expire. A file that cannot be opened or refuses
writes for good (read-only, full, damaged) keeps the entries in an
in-memory database from then on (logged); a file locked by another program
past its timeout is a 503 ``state_unavailable`` for a call that needs the
lock (logged), as a Redis store's outage is; reads the file still allows
(WAL) go on, the clean-up of expired entries waiting for the lock.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import orjson

from .errors import StateUnavailable
from .responses import StoredEntry
from .sqlite import SQLiteStore

log = logging.getLogger("ds2proxy.state")

DEFAULT_MAX_ENTRIES = 1024
# Bodies may be 64 MiB each (runtime.max_body_bytes): by count alone 1024 of
# them could fill 64 GiB of the disk the request log and account health
# share (or of memory, with the file unusable).
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
EXPIRE_EVERY = 60.0
EXPIRE_RETRY = 5.0  # a clean-up that met a lock is tried again this soon
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # another program holds the file
_SCHEMA = ("CREATE TABLE IF NOT EXISTS responses (id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
           "stored_at REAL NOT NULL, doc BLOB NOT NULL);"
           "CREATE INDEX IF NOT EXISTS responses_stored_at ON responses(stored_at);")

# The entries past the byte budget, newest first (length() of a blob reads
# its size, not its bytes); never the one just kept.
_PAST_BUDGET = ("DELETE FROM responses WHERE id IN (SELECT id FROM (SELECT id, SUM(length(doc)) "
                "OVER (ORDER BY stored_at DESC, rowid DESC) AS upto FROM responses) "
                "WHERE upto > ?) AND id != ?")


def _in_memory(path: object, exc: BaseException) -> sqlite3.Connection:
    log.warning("state file %s cannot keep stored responses (%s); they are kept in memory "
                "only", path, exc)
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.executescript(_SCHEMA)
    return db


class SQLiteResponses:
    def __init__(self, store: SQLiteStore, ttl: Callable[[], float], *,
                 clock: Callable[[], float] = time.time,
                 max_entries: int = DEFAULT_MAX_ENTRIES,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.store = store
        self._ttl, self._clock, self._max = ttl, clock, max_entries
        self._max_bytes = max_bytes
        self._db: sqlite3.Connection | None = None
        self._expired_at = -EXPIRE_EVERY
        self._expire_held = False  # the last clean-up met a lock (logged once)

    async def _run(self, job: Callable[[sqlite3.Connection], Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.store.executor, self._job, job)

    def _job(self, job: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            db = self._conn()
            self._expire(db)
            return job(db)
        except (OSError, sqlite3.Error) as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY:
                log.warning("stored responses: the state file %s is locked (%s)",
                            self.store.path, exc)
                raise StateUnavailable("the state file is locked right now; retry shortly"
                                       ) from exc
            self._db = _in_memory(self.store.path, exc)  # read-only, full, damaged
            return job(self._db)

    def _conn(self) -> sqlite3.Connection:
        """The file's connection with the table made (a lock meanwhile is
        raised: the next call tries again, the file is not given up)."""
        if self._db is None:
            db = self.store.connection()
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def _expire(self, db: sqlite3.Connection) -> None:
        """Entries past the TTL leave the file (not only the reads), at most
        once a minute: a response is not kept on disk longer than asked."""
        if time.monotonic() - self._expired_at < EXPIRE_EVERY:
            return
        try:
            with db:
                db.execute("DELETE FROM responses WHERE stored_at <= ?",
                           (self._clock() - self._ttl(),))
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in _BUSY:
                raise
            # Another program's write lock leaves reads free (WAL): the
            # call goes on (reads skip expired entries), the delete waits.
            if not self._expire_held:
                log.warning("stored responses: expired stored responses not deleted yet, the "
                            "state file %s is locked (%s)", self.store.path, exc)
            self._expire_held = True
            self._expired_at = time.monotonic() - EXPIRE_EVERY + EXPIRE_RETRY
            return
        self._expire_held = False
        self._expired_at = time.monotonic()

    async def keep(self, owner: str, response: dict[str, Any], input_items: list[Any]) -> None:
        now, limit, budget = self._clock(), self._max, self._max_bytes

        def write(db: sqlite3.Connection) -> None:
            # Encoded here, off the loop: the items may hold megabytes of input.
            doc = orjson.dumps({"response": response, "input_items": input_items})
            with db:
                db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)",
                           (response["id"], owner, now, doc))
                db.execute("DELETE FROM responses WHERE id IN (SELECT id FROM responses "
                           "ORDER BY stored_at DESC, rowid DESC LIMIT -1 OFFSET ?)", (limit,))
                db.execute(_PAST_BUDGET, (budget, response["id"]))

        await self._run(write)

    async def fetch(self, owner: str, response_id: str) -> StoredEntry | None:
        since = self._clock() - self._ttl()

        def read(db: sqlite3.Connection) -> StoredEntry | None:
            row = db.execute("SELECT stored_at, doc FROM responses WHERE id = ? AND owner = ? "
                             "AND stored_at > ?", (response_id, owner, since)).fetchone()
            return None if row is None else _entry(owner, response_id, row[1], row[0])

        return await self._run(read)

    async def drop(self, owner: str, response_id: str) -> bool:
        """Delete the caller's own live entry; False when there is none."""
        since = self._clock() - self._ttl()

        def delete(db: sqlite3.Connection) -> bool:
            with db:
                return db.execute("DELETE FROM responses WHERE id = ? AND owner = ? "
                                  "AND stored_at > ?", (response_id, owner, since)).rowcount > 0

        return await self._run(delete)


def _entry(owner: str, response_id: str, raw: Any, stored_at: float) -> StoredEntry | None:
    """A kept row as its entry (decoded here, off the loop); a damaged one
    is named and read as missing (a 404), not a 500 on every read of it."""
    try:
        doc = orjson.loads(raw)
        return StoredEntry(owner, doc["response"], doc["input_items"], stored_at)
    except (TypeError, KeyError, orjson.JSONDecodeError) as exc:
        log.warning("stored response %s in the state file is damaged (%s); read as missing",
                    response_id, type(exc).__name__)
        return None
