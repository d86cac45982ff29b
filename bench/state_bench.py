"""What the shared state adds per request: rate limiting plus usage
recording, with the embedded backend versus Redis on loopback.

Per request, on the event loop: the per-minute check of a named key with an
rpm limit (embedded: the in-process window; Redis: one Lua call) and the
usage row handed to the store (embedded: a queue put for the SQLite writer
thread; Redis: a buffer append, written in batches by a background task).
Prints p50 / p99 per request for each backend and the difference, and how
long the store then took to land every row.

    python bench/state_bench.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ds2proxy.keyring import KeyConfig, KeyLimits
from ds2proxy.limits import KeyLimiter
from ds2proxy.state.redis_limits import RedisCounters
from ds2proxy.state.redis_link import RedisLink
from ds2proxy.state.redis_usage import RedisUsage
from ds2proxy.state.settings import parse_state
from ds2proxy.state.usage import SQLiteUsage
from ds2proxy.testing.redis_server import RedisServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import percentile as pct, sample_record  # noqa: E402


def row(i: int) -> dict:
    return sample_record(i).fields()


async def run(name: str, limiter: KeyLimiter, store, count: int) -> list[float]:
    key = KeyConfig(secret="sk-bench", name="bench", limits=KeyLimits(rpm=count * 10))
    shared = limiter.shared is not None
    took = []
    for i in range(count):
        start = time.perf_counter()
        if shared:
            await limiter.admit_shared(key)
        else:
            limiter.admit(key)
        store.record(row(i))
        took.append((time.perf_counter() - start) * 1000)
        if i % 50 == 0:
            await asyncio.sleep(0)  # let the background writer run, as between requests
    landed = time.perf_counter()
    await store.flush()
    drain = (time.perf_counter() - landed) * 1000
    print(f"{name:9s} p50 {pct(took, 50):.3f} ms  p99 {pct(took, 99):.3f} ms  "
          f"mean {statistics.fmean(took):.3f} ms  (rows landed {drain:.0f} ms after the last)")
    return took


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        sqlite = SQLiteUsage(str(Path(folder) / "bench.state.sqlite"))
        embedded = await run("embedded", KeyLimiter(), sqlite, count)
        await sqlite.close()
    with RedisServer() as server:
        link = RedisLink(parse_state({"state": {"backend": "redis",
                                                "redis_url": server.url}}, {}))
        await link.start()
        limiter = KeyLimiter()
        limiter.shared = RedisCounters(link)
        shared = await run("redis", limiter, RedisUsage(link), count)
        await link.close()
    print(f"added by redis: p50 {pct(shared, 50) - pct(embedded, 50):.3f} ms per request "
          f"(target <= 1 ms on loopback)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    asyncio.run(main(parser.parse_args().requests))
