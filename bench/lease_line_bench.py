"""What one shared-lease decision costs Redis with many accounts and a full
line of waiting requests.

    python bench/lease_line_bench.py [--accounts 100 1000] [--waiters 256]

For each account count: every account is leased to its limit (1), then
``--waiters`` requests join the cluster's line (each with the accounts in
its own order of preference, as an instance's least-recently-used order
makes them), then 20 more requests ask and a few renewals run. It prints
the Redis-side time per call (INFO commandstats) and Redis's memory. Every
such call runs inside Redis alone: nothing else is served meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ds2proxy.state import redis_link  # noqa: E402
from ds2proxy.state.leases import RedisLeases  # noqa: E402
from ds2proxy.state.redis_link import RedisLink  # noqa: E402
from ds2proxy.state.settings import parse_state  # noqa: E402
from ds2proxy.testing.redis_server import RedisServer  # noqa: E402


async def redis_ms_per_call(link: RedisLink) -> float:
    stats = (await link.client.info("commandstats")).get("cmdstat_evalsha", {})
    await link.client.config_resetstat()
    return float(stats.get("usec_per_call", 0)) / 1000


async def one(accounts: int, waiters: int) -> None:
    with RedisServer() as server:
        link = RedisLink(parse_state({"state": {"backend": "redis",
                                                "redis_url": server.url}}, {}))
        await link.start()
        leases = RedisLeases(link, 30)
        names = [f"user{i}@example.com" for i in range(accounts)]
        limits = (1, accounts * 10)
        leases.start(names, lambda tickets: None, lambda: None)
        leases.configure(names, limits)
        for name in names:
            assert await leases.acquire([name], *limits)
        await redis_ms_per_call(link)
        for _ in range(waiters):
            order = random.sample(names, len(names))
            assert await leases.acquire(order, *limits, leases.ticket(), True) is None
        joins = await redis_ms_per_call(link)
        for _ in range(20):
            await leases.acquire(random.sample(names, len(names)), *limits, leases.ticket())
        asks = await redis_ms_per_call(link)
        for _ in range(5):
            await leases.renew()
        renews = await redis_ms_per_call(link)
        memory = (await link.client.info("memory"))["used_memory"] / 1e6
        print(f"{accounts} accounts, {waiters} waiting: join {joins:.2f} ms, "
              f"ask with the line full {asks:.2f} ms, renewal {renews:.2f} ms "
              f"(Redis time per call); Redis memory {memory:.1f} MB")
        await leases.close()
        await link.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--waiters", type=int, default=256)
    args = parser.parse_args()
    redis_link.CALL_TIMEOUT = 60.0  # the bench measures slow calls, not outages
    for count in args.accounts:
        asyncio.run(one(count, args.waiters))


if __name__ == "__main__":
    main()
