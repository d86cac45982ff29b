"""Lease decisions per second: the account pool with health tracking, with
and without pacing, over many accounts (some cooling, one disabled).

    python bench/pool_bench.py [--accounts 200] [--leases 50000]

Accounts hold tokens (as they do once logged in). Each lease picks the least
recently used eligible account, records the grant (requests today, pacing
window) and is released; prints leases/s.
"""

from __future__ import annotations

import argparse
import logging
import asyncio
import time

from ds2proxy.config import AccountConfig, RuntimeSettings
from ds2proxy.health import Failure, HealthTracker, Pacer, PacingSettings
from ds2proxy.scheduler import AccountPool


def build(accounts: int, pacing: PacingSettings) -> AccountPool:
    configs = tuple(AccountConfig(email=f"u{i}@example.com", password="p", token=f"t{i}")
                    for i in range(accounts))
    health = HealthTracker()
    pool = AccountPool(configs, RuntimeSettings(account_max_inflight=2), health,
                       Pacer(pacing))
    for i in range(0, accounts, 10):
        health.failed(f"u{i}@example.com", Failure("rate_limited", "bench"))
    health.disable("u1@example.com")
    return pool


async def run(pool: AccountPool, leases: int) -> float:
    start = time.perf_counter()
    for _ in range(leases):
        lease = await pool.acquire()
        lease.release()
    return leases / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--leases", type=int, default=50000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the setup's cooldowns would each log a line
    plain = await run(build(args.accounts, PacingSettings()), args.leases)
    # Pacing that never actually blocks here: a tiny interval, a huge hourly cap.
    paced = await run(build(args.accounts, PacingSettings(min_interval_seconds=1e-9,
                                                          max_per_hour=10**9)), args.leases)
    print(f"{args.accounts} accounts: {plain:,.0f} leases/s without pacing, "
          f"{paced:,.0f} leases/s with pacing")


if __name__ == "__main__":
    asyncio.run(main())
