"""What one poll of the admin overview's account counts costs on the event
loop, with thousands of accounts (a tenth cooling down, a few busy): the
walk of every account's status (``AccountPool.status``) against the counts
read off the busy and unhealthy accounts (``admin.pool_counts``).

    python bench/overview_bench.py [--accounts 4000] [--polls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

from ds2proxy.admin.pool_counts import queue_counts, worth_showing
from ds2proxy.config import AccountConfig, RuntimeSettings
from ds2proxy.health import Failure, HealthTracker, Pacer, PacingSettings
from ds2proxy.scheduler import AccountPool


async def build(accounts: int) -> AccountPool:
    configs = tuple(AccountConfig(email=f"u{i}@example.com", password="p", token=f"t{i}")
                    for i in range(accounts))
    pool = AccountPool(configs, RuntimeSettings(account_max_inflight=2), HealthTracker(),
                       Pacer(PacingSettings()))
    for i in range(0, accounts, 10):
        pool.health.failed(f"u{i}@example.com", Failure("rate_limited", "bench"))
    pool.health.disable("u1@example.com")
    for _ in range(50):  # held for the run: some accounts are busy
        await pool.acquire()
    return pool


def per_poll_ms(poll, polls: int) -> float:
    start = time.perf_counter()
    for _ in range(polls):
        poll()
    return (time.perf_counter() - start) * 1000 / polls


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=4000)
    parser.add_argument("--polls", type=int, default=200)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the setup's cooldowns would each log a line
    pool = await build(args.accounts)
    order = {s.identifier: i for i, s in enumerate(pool.accounts())}
    walked = per_poll_ms(pool.status, args.polls)
    counted = per_poll_ms(lambda: (queue_counts(pool), worth_showing(pool, [], order, 20)),
                          args.polls)
    print(f"{args.accounts} accounts: status() walk {walked:.2f} ms per poll, "
          f"kept counts + 20 rows {counted:.3f} ms per poll")


if __name__ == "__main__":
    asyncio.run(main())
