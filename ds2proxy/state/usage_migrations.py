"""Upgrades of an embedded usage store written by an earlier version.

Rows and rollups keep the ref of the key that made them
(:attr:`ds2proxy.keyring.KeyConfig.ref`), so a key's page follows it across
renames. A store from before has none: its rollups are rebuilt with the ref
in their key (the ref left NULL), and :func:`adopt_refs` then gives those
rows, once, the ref of the key that has their name at the upgrade.
"""

from __future__ import annotations

import logging
import os
import sqlite3

log = logging.getLogger("ds2proxy.usage")

ROLLUP_V1 = ("grain, bucket, key_name, model, account, family, requests, errors, "
             "prompt_tokens, completion_tokens, reasoning_tokens, latency_ms_sum")
METRICS = ("requests", "errors", "prompt_tokens", "completion_tokens", "reasoning_tokens",
           "latency_ms_sum")
_REF_OF_NAME = "COALESCE((SELECT ref FROM temp.adopted_refs WHERE name = {}.key_name), '')"


def add_ref_columns(db: sqlite3.Connection, columns: set[str], schema: str) -> None:
    """``requests.key_ref`` (NULL on the rows before it), and the rollups
    rebuilt with ``key_ref`` in their primary key (``schema`` makes them)."""
    if "key_ref" not in columns:
        db.execute("ALTER TABLE requests ADD COLUMN key_ref TEXT")
    if "key_ref" in {row[1] for row in db.execute("PRAGMA table_info(rollups)")}:
        return
    db.execute("ALTER TABLE rollups RENAME TO rollups_v1")
    db.executescript(schema)
    with db:
        db.execute(f"INSERT INTO rollups ({ROLLUP_V1}) SELECT {ROLLUP_V1} FROM rollups_v1")
        db.execute("DROP TABLE rollups_v1")


def adopt_refs(db: sqlite3.Connection, refs: dict[str, str]) -> None:
    """Rows and rollups with no ref yet get the ref ``refs`` maps their key's
    name to ("" when none: a deleted key, pass-through), so only once."""
    sums = ", ".join(f"{m} = {m} + excluded.{m}" for m in METRICS)
    with db:
        db.execute("CREATE TEMP TABLE IF NOT EXISTS adopted_refs "
                   "(name TEXT PRIMARY KEY, ref TEXT NOT NULL)")
        db.execute("DELETE FROM temp.adopted_refs")
        db.executemany("INSERT INTO temp.adopted_refs VALUES (?, ?)", list(refs.items()))
        changed = db.execute(f"UPDATE requests SET key_ref = {_REF_OF_NAME.format('requests')} "
                             "WHERE key_ref IS NULL").rowcount
        db.execute(f"INSERT INTO rollups ({ROLLUP_V1}, key_ref) SELECT {ROLLUP_V1}, "
                   f"{_REF_OF_NAME.format('rollups')} FROM rollups WHERE key_ref IS NULL "
                   "ON CONFLICT (grain, bucket, key_ref, key_name, model, account, family) "
                   f"DO UPDATE SET {sums}")
        db.execute("DELETE FROM rollups WHERE key_ref IS NULL")
    if changed:
        log.info("usage store: %d request rows given their key's ref", changed)


def import_legacy(db: sqlite3.Connection, legacy: str, fields: tuple[str, ...]) -> None:
    """Bring the rows of a former separate usage file into the state file
    (once: the old file is renamed ``*.migrated`` afterwards)."""
    if db.execute("SELECT 1 FROM requests LIMIT 1").fetchone() is not None:
        log.warning("usage file %s was not imported: the state file already has usage", legacy)
        return
    db.execute("ATTACH DATABASE ? AS legacy", (legacy,))
    try:
        with db:
            present = {row[1] for row in db.execute("PRAGMA legacy.table_info(requests)")}
            cols = ",".join(f for f in fields if f in present)  # older files lack some
            db.execute(f"INSERT INTO requests ({cols}) SELECT {cols} FROM legacy.requests "
                       "ORDER BY id")
            db.execute(f"INSERT OR IGNORE INTO rollups ({ROLLUP_V1}) "
                       f"SELECT {ROLLUP_V1} FROM legacy.rollups")
        moved = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    finally:
        db.execute("DETACH DATABASE legacy")
    os.replace(legacy, legacy + ".migrated")
    log.info("imported %d usage rows from %s into the state file", moved, legacy)


def add_filter_indexes(db: sqlite3.Connection, indexes: dict[str, str]) -> None:
    """The request-log filters' indexes (name -> what it indexes), made once
    for a file that predates them (a minute or so for millions of rows, at
    start, off the loop)."""
    present = {name for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    missing = [name for name in indexes if name not in present]
    if not missing:
        return
    if db.execute("SELECT 1 FROM requests LIMIT 1").fetchone() is not None:
        log.info("indexing the request log for its filters (%s)", ", ".join(missing))
    with db:
        for name in missing:
            db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {indexes[name]}")
    # The planner's statistics (sampled: quick on any size), without which
    # it takes the key's index over the key's-failures one.
    db.execute("ANALYZE")
