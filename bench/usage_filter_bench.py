"""What a filtered request-log page costs on a large state file, before and
after the per-filter indexes, and how long a file that predates them takes
to be indexed at its first start.

Builds a state file of ``--rows`` request rows (20 keys, 6 models, 10
accounts, 5 families, 2 % failures) without the filter indexes, times each
filter's first page (50 rows and the total, the query the admin's request
log runs) on it, opens it with :class:`SQLiteUsage` (which adds the indexes)
and times the same pages through the store.

    python bench/usage_filter_bench.py [--rows 2000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from ds2proxy.state.usage import LISTED, ROW_FIELDS, SCHEMA, SQLiteUsage
from ds2proxy.state.usage_schema import where_clause as _where

FILTERS = {
    "key_name": {"key_name": "key-7"},
    "model": {"model": "deepseek-reasoner"},
    "status": {"status": 500},
    "account": {"account": "acct-3@example.com"},
    "family": {"family": "gemini"},
    "request_id": {"request_id": "req-1234567"},
    "errors": {"errors": True},
    "key_name+errors": {"key_name": "key-7", "errors": True},
}


def rows(first: int, count: int, rnd: random.Random) -> list[tuple]:
    """Rows ``first`` .. ``first + count`` of a three-day history."""
    start = time.time() - 3 * 86400
    models = ["deepseek-chat", "deepseek-reasoner", "gpt-4o", "claude-sonnet-4-5",
              "gemini-2.5-pro", "qwen"]
    families = ["openai", "anthropic", "gemini", "ollama", "degpt"]
    out = []
    for i in range(first, first + count):
        failed = rnd.random() < 0.02
        row = {"time": start + i * 0.1, "request_id": f"req-{i}",
               "key_name": f"key-{rnd.randrange(20)}", "family": rnd.choice(families),
               "route": "/v1/chat/completions", "method": "POST", "model": rnd.choice(models),
               "native_model": "deepseek-chat", "account": f"acct-{rnd.randrange(10)}@example.com",
               "status": rnd.choice((429, 500)) if failed else 200,
               "error_code": "upstream_error" if failed else "", "error_message": "",
               "latency_ms": 800.0, "ttfb_ms": 200.0, "prompt_tokens": 40,
               "completion_tokens": 120, "reasoning_tokens": 0, "tool_calls": 0, "stream": 1,
               "request_body": "", "served_by": "pool"}
        out.append(tuple(row[f] for f in ROW_FIELDS))
    return out


def build(path: Path, n: int, chunk: int = 100_000) -> None:
    """A state file as it was before the filter indexes (its old schema)."""
    rnd = random.Random(7)
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    insert = (f"INSERT INTO requests ({','.join(ROW_FIELDS)}) VALUES "
              f"({','.join('?' * len(ROW_FIELDS))})")
    with db:
        for first in range(0, n, chunk):
            db.executemany(insert, rows(first, min(chunk, n - first), rnd))
    db.close()


def page_sql(filters: dict) -> tuple[str, str, list]:
    where, args = _where(filters)  # the query as it was: no index chosen for it
    return (f"SELECT COUNT(*) FROM requests{where}",
            f"SELECT {','.join(LISTED)} FROM requests{where} ORDER BY id DESC LIMIT 50 OFFSET 0",
            args)


def raw_page_ms(path: Path, filters: dict, runs: int) -> float:
    db = sqlite3.connect(path)
    count, page, args = page_sql(filters)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        db.execute(count, args).fetchone()
        db.execute(page, args).fetchall()
        times.append((time.perf_counter() - start) * 1000)
    db.close()
    return statistics.median(times)


async def store_page_ms(store: SQLiteUsage, filters: dict, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await store.requests(filters, 50, 0)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.state.sqlite"
        start = time.perf_counter()
        build(path, args.rows)
        print(f"built {args.rows:,} rows in {time.perf_counter() - start:.1f} s")
        before = {name: raw_page_ms(path, f, args.runs) for name, f in FILTERS.items()}
        start = time.perf_counter()
        store = await asyncio.to_thread(SQLiteUsage, str(path))
        print(f"first start on the old file (indexes added): "
              f"{time.perf_counter() - start:.1f} s")
        print(f"{'filter':<18}{'before ms':>12}{'after ms':>12}")
        for name, filters in FILTERS.items():
            after = await store_page_ms(store, filters, args.runs)
            print(f"{name:<18}{before[name]:>12.1f}{after:>12.1f}")
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
