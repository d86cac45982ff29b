"""Retention of the usage store, pruned a bounded batch at a time.

A shortened retention on a busy file may leave millions of rows past it.
Deleting them in one statement held the file's write lock for as long as
that took (every request row, account-health write and stored response of
the process waiting behind it) and grew the write-ahead log by the size of
everything deleted. :func:`prune_steps` deletes at most ``batch`` rows per
transaction and yields between them, so the writer thread writes the rows
and answers the reads queued meanwhile, and the log is checkpointed back
to its usual size after each batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

BATCH = 2000

# (table, its row key, the condition of the rows past retention)
_PAST = (
    ("requests", "id", "time < ?"),
    ("rollups", "rowid", "grain = 'minute' AND bucket < ?"),
    ("rollups", "rowid", "grain = 'hour' AND bucket < ?"),
    ("rollups", "rowid", "grain = 'day' AND bucket < ?"),
)


def cut_offs(now: float, raw_days: int, hourly_days: int) -> tuple[float, ...]:
    """The oldest time each of ``_PAST``'s kinds of row keeps: raw rows and
    minute rollups ``raw_days``, hour rollups ``hourly_days``, day rollups
    ten times that."""
    raw = now - raw_days * 86400
    return raw, raw, now - hourly_days * 86400, now - hourly_days * 10 * 86400


def prune_steps(db: sqlite3.Connection, cuts: tuple[float, ...],
                batch: int | None = None) -> Iterator[int]:
    """Delete what is older than ``cuts`` (see :func:`cut_offs`), yielding
    the count of each batch after its commit; ends with fresh planner
    statistics. Each batch picks its rows through an index (time, or the
    rollups' key that starts with grain and bucket), so it costs its own
    size, not the table's."""
    size = batch or BATCH
    for (table, key, past), cut in zip(_PAST, cuts):
        pick = f"SELECT {key} FROM {table} WHERE {past} LIMIT ?"
        while True:
            with db:
                deleted = db.execute(f"DELETE FROM {table} WHERE {key} IN ({pick})",
                                     (cut, size)).rowcount
            if deleted <= 0:
                break
            yield deleted
    db.execute("PRAGMA optimize")  # fresh planner statistics as the log grows
