"""How long the usage store's writes stall while a shortened retention
prunes a large request log.

Builds a state file of ``--rows`` request rows and as many minute rollups,
all a month old, opens it with :class:`SQLiteUsage` keeping 60 days, then
shortens the retention to 7 days (the admin's settings change) while the
loop records a request every few milliseconds and waits for each to be
written. Prints how long the prune took, the longest and 99th-percentile
write wait meanwhile, and the largest the write-ahead log grew.
``--one-transaction`` prunes as before batches (everything in one).

    python bench/usage_prune_bench.py [--rows 1000000] [--one-transaction]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from ds2proxy.request_record import RequestRecord
from ds2proxy.state import usage_prune
from ds2proxy.state.usage import ROW_FIELDS, SQLiteUsage

MONTH = 30 * 86400


def build(path: Path, n: int, chunk: int = 100_000) -> None:
    """``n`` month-old rows and minute rollups, on the store's own schema."""
    asyncio.run(SQLiteUsage(str(path)).close())  # the tables and every index
    old = time.time() - MONTH
    insert = (f"INSERT INTO requests ({','.join(ROW_FIELDS)}) VALUES "
              f"({','.join('?' * len(ROW_FIELDS))})")
    db = sqlite3.connect(path)
    for first in range(0, n, chunk):
        with db:
            db.executemany(insert, [(old + i, f"req-{i}", f"key-{i % 20}", "openai", "/v1",
                                     "POST", "m", "m", f"acct-{i % 10}", 200, "", "", 800.0,
                                     200.0, 40, 120, 0, 0, 1, "", "pool", "")
                                    for i in range(first, min(n, first + chunk))])
            db.executemany("INSERT INTO rollups VALUES ('minute',?,'k','m','a','f',1,0,1,1,0,"
                           "1.0,'')", [(int(old) + 60 * i,)
                                       for i in range(first, min(n, first + chunk))])
    db.close()


async def measure(path: Path) -> None:
    store = SQLiteUsage(str(path), raw_days=60, hourly_days=90)
    await store.flush()
    wal = Path(f"{path}-wal")
    waits: list[float] = []
    largest_wal = 0
    started = time.perf_counter()
    store.retain(7, 90)

    async def old_rows_left() -> bool:
        cut = time.time() - 7 * 86400
        return bool(await store._call(lambda db: db.execute(
            "SELECT EXISTS (SELECT 1 FROM requests WHERE time < ?)", (cut,)).fetchone()[0]))

    n = 0
    while True:  # the first write is queued right behind the prune's start
        record = RequestRecord(request_id=f"live-{n}", family="openai", route="/v1",
                               time=time.time(), key_name="k", model="m", account="a",
                               status=200)
        sent = time.perf_counter()
        store.record(record.fields())
        await store.flush()
        waits.append(time.perf_counter() - sent)
        largest_wal = max(largest_wal, wal.stat().st_size if wal.exists() else 0)
        n += 1
        if not await old_rows_left():
            break
        await asyncio.sleep(0.005)
    took = time.perf_counter() - started
    await store.close()
    waits.sort()
    p99 = waits[int(len(waits) * 0.99)] if waits else 0.0
    print(f"prune took {took:.1f} s; {len(waits)} writes meanwhile: longest wait "
          f"{waits[-1] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, median "
          f"{statistics.median(waits) * 1000:.1f} ms; largest WAL {largest_wal / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--one-transaction", action="store_true")
    args = parser.parse_args()
    if args.one_transaction:
        usage_prune.BATCH = 2**62
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.state.sqlite"
        build(path, args.rows)
        print(f"{args.rows} rows past retention, {os.path.getsize(path) / 1e6:.0f} MB; "
              f"batch {usage_prune.BATCH}")
        asyncio.run(measure(path))


if __name__ == "__main__":
    main()
