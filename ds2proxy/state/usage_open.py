"""Opening the usage store's SQLite file (schema and migrations included).

Split from :mod:`.usage` so the store can try it again: a file another
program holds locked at the first start (still in rollback-journal mode,
so switching it to WAL needs its lock) is opened later, once it frees.
"""

from __future__ import annotations

import logging
import os
import sqlite3

from .errors import StateUnavailable
from .usage_migrations import add_filter_indexes, add_ref_columns, import_legacy
from .usage_schema import FILTER_INDEXES, ROW_FIELDS, SCHEMA

log = logging.getLogger("ds2proxy.usage")

BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def busy(exc: BaseException) -> bool:
    """``exc`` says another connection holds the file's lock."""
    return (isinstance(exc, sqlite3.OperationalError)
            and getattr(exc, "sqlite_errorcode", 0) & 0xFF in BUSY)


def refusal(exc: sqlite3.OperationalError | None) -> Exception:
    """A read the locked file refused (None: it could not be opened yet): a
    503 to retry, not a 500; any other error as it is."""
    if exc is not None:
        if not busy(exc):
            return exc
        log.warning("usage store: a read found the file locked by another program (%s)", exc)
    return StateUnavailable("the usage store's file is locked by another program; "
                            "retry shortly")


def open_usage_file(path: str, legacy: str | None, wait_s: float) -> sqlite3.Connection:
    """A connection with the schema ready, having waited up to ``wait_s``
    for each lock it needed; closed again when that is not enough."""
    fresh = path != ":memory:" and not os.path.exists(path)
    db = sqlite3.connect(path, check_same_thread=False, timeout=wait_s)
    try:
        if fresh:
            os.chmod(path, 0o600)
        _prepare(db, path, legacy)
    except BaseException:
        db.close()
        raise
    return db


def _prepare(db: sqlite3.Connection, path: str, legacy: str | None) -> None:
    db.row_factory = sqlite3.Row
    if path != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    db.execute("PRAGMA analysis_limit = 1000")
    columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    if "served_by" not in columns:  # a store written before routes existed
        db.execute("ALTER TABLE requests ADD COLUMN served_by TEXT")
    add_ref_columns(db, columns, SCHEMA)
    if legacy and os.path.isfile(legacy):
        import_legacy(db, legacy, ROW_FIELDS)
    add_filter_indexes(db, FILTER_INDEXES)
