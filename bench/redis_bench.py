"""What sharing state on Redis costs per request, and what a second instance
adds in throughput.

    python bench/redis_bench.py [--turns 1000] [--requests 400] [--concurrency 16]

A fake DeepSeek upstream, a redis-server and the proxies each run in their
own process on 127.0.0.1; this process is the client. It prints:

1. the p50 of a short non-stream turn through an embedded proxy and through
   a Redis-backed one (taking turns, so machine load hits both alike), the
   p50 of their paired differences (what Redis adds per request), and each
   proxy's CPU per turn (from /proc, steadier on a busy machine); the
   paired differences spread over a millisecond or more on a shared
   machine, so it takes ~1000 pairs for their p50 to hold within ~0.05 ms;
2. the p50 of the lease round trips alone (acquire + release scripts, one
   Redis call each) measured in this process, the floor of that difference;
3. requests per second of ``--requests`` short turns at ``--concurrency``
   through one Redis-backed instance, then spread over two (client-side round
   robin, no balancer), with the client on the same cores.

``--key-limits`` gives the bench key a (never reached) requests-per-minute
and concurrent-request limit, so every turn also passes the key's limit
checks, which on Redis are calls of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (KEY, auth, chat_body, cpu_seconds, fake_upstream,  # noqa: E402
                      proxy_config, proxy_process, wait_http)

from ds2proxy.state.leases import RedisLeases  # noqa: E402
from ds2proxy.state.redis_link import RedisLink  # noqa: E402
from ds2proxy.state.settings import parse_state  # noqa: E402
from ds2proxy.testing.redis_server import RedisServer  # noqa: E402

ACCOUNTS = 4


async def turn(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.post(url + "/v1/chat/completions", json=chat_body(False),
                         headers=auth()) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}")
    return time.perf_counter() - started


async def latency(embedded: str, shared: str, turns: int) -> tuple[float, float, float]:
    """p50 seconds of sequential turns on each, and the p50 of the paired
    differences (shared minus embedded; each pair in alternating order, so a
    burst of load from elsewhere on the machine hits both alike)."""
    pairs: list[tuple[float, float]] = []
    async with aiohttp.ClientSession() as http:
        for url in (embedded, shared):  # warm up: logins, sessions, caches
            for _ in range(10):
                await turn(http, url)
        for i in range(turns):
            if i % 2:
                second = await turn(http, shared)
                first = await turn(http, embedded)
            else:
                first = await turn(http, embedded)
                second = await turn(http, shared)
            pairs.append((first, second))
    return (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs),
            statistics.median(p[1] - p[0] for p in pairs))


async def lease_round_trips(redis_url: str, count: int) -> float:
    """p50 seconds of one acquire + release through the Lua scripts."""
    link = RedisLink(parse_state({"state": {"backend": "redis", "redis_url": redis_url,
                                            "key_prefix": "bench:"}}, {}))
    await link.start()
    leases = RedisLeases(link, 30)
    accounts = [f"u{i}@example.com" for i in range(ACCOUNTS)]
    samples = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            got = await leases.acquire(accounts, 4, 16)
            assert got is not None
            leases.release(*got)
            await leases.releases.settle()
            samples.append(time.perf_counter() - started)
    finally:
        await link.close()
    return statistics.median(samples)


async def throughput(urls: list[str], requests: int, concurrency: int) -> float:
    """Requests per second of ``requests`` turns spread over ``urls``."""
    todo = iter(range(requests))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def worker(offset: int) -> None:
            for i in todo:
                await turn(http, urls[(i + offset) % len(urls)])

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return requests / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        upstream = stack.enter_context(fake_upstream(accounts=ACCOUNTS, answer_chars=40,
                                                     chunk_size=8))
        extra: dict = {"usage": {"enabled": False}}
        if args.key_limits:
            extra["keys"] = [{"name": "bench", "key": KEY,
                              "limits": {"rpm": 1_000_000, "concurrent": 1000}}]
        base = proxy_config(upstream, accounts=ACCOUNTS, per_account=8, extra=extra)
        shared = {**base, "state": {"backend": "redis", "redis_url": redis.url}}
        embedded_url, embedded_pid = stack.enter_context(proxy_process(base))
        first, first_pid = stack.enter_context(proxy_process(shared))
        second, _ = stack.enter_context(proxy_process(shared))
        for url in (embedded_url, first, second):
            await wait_http(url + "/readyz")

        cpu = {pid: cpu_seconds(pid) for pid in (embedded_pid, first_pid)}
        p50_embedded, p50_redis, added = await latency(embedded_url, first, args.turns)
        cpu = {pid: (cpu_seconds(pid) - used) / args.turns * 1000 for pid, used in cpu.items()}
        print(f"short turn p50: embedded {p50_embedded * 1000:.2f} ms, "
              f"redis {p50_redis * 1000:.2f} ms; added per request (p50 of paired "
              f"differences) {added * 1000:+.2f} ms")
        print(f"proxy CPU per turn: embedded {cpu[embedded_pid]:.2f} ms, "
              f"redis {cpu[first_pid]:.2f} ms")
        floor = await lease_round_trips(redis.url, args.turns * 2)
        print(f"lease acquire + release round trips p50: {floor * 1000:.3f} ms")
        one = await throughput([first], args.requests, args.concurrency)
        two = await throughput([first, second], args.requests, args.concurrency)
        print(f"throughput at concurrency {args.concurrency}: one instance {one:.0f} req/s, "
              f"two instances {two:.0f} req/s ({two / one:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--key-limits", action="store_true",
                        help="give the key an rpm and a concurrent limit (never reached)")
    asyncio.run(main(parser.parse_args()))
