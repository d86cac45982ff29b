"""Time to first byte of a turn when every upstream call costs a round trip.

The fake upstream (own process) waits ``--latency`` before answering each
call. A turn needs a chat session, a PoW challenge (then its solve) and the
completion; with the session and the challenge overlapped the first answer
chunk arrives after two round trips plus the solve, not three.

    python bench/ttfb_bench.py [--latency 0.05] [--turns 20] [--difficulty 144000]

Prints the median and p90 time to the first answer chunk, the median solve
time of challenges at that difficulty (measured here, same solver), and the
two-round-trip bound.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    auth,
    chat_body,
    fake_upstream,
    proxy_config,
    proxy_process,
    wait_http,
)

from ds2proxy.pow import Challenge, deepseek_hash_v1, solve  # noqa: E402


async def first_chunk_seconds(http: aiohttp.ClientSession, url: str) -> float:
    start = time.perf_counter()
    async with http.post(url + "/v1/chat/completions", json=chat_body(True, "chars=64"),
                         headers=auth()) as resp:
        if resp.status != 200:
            raise RuntimeError(f"proxy answered {resp.status}")
        first = 0.0
        async for line in resp.content:
            if not first and line.startswith(b"data: {") and b'"content"' in line:
                first = time.perf_counter() - start
        return first


async def median_solve_seconds(difficulty: int, count: int) -> float:
    """Solve challenges whose answers are spread over the range, as the fake's are."""
    times = []
    for i in range(count):
        answer = (i * 7919 + 13) % difficulty
        salt, expire_at = f"salt{i}", int(time.time() * 1000) + 60_000
        target = deepseek_hash_v1(f"{salt}_{expire_at}_{answer}".encode())
        challenge = Challenge(algorithm="DeepSeekHashV1", challenge=target.hex(), salt=salt,
                              signature="s", difficulty=difficulty, expire_at=expire_at,
                              expire_after=60_000,
                              target_path="/api/v0/chat/completion")
        start = time.perf_counter()
        await solve(challenge)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per upstream call")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--difficulty", type=int, default=144000)
    args = parser.parse_args()

    with fake_upstream(latency=args.latency, difficulty=args.difficulty) as base_url, \
            proxy_process(proxy_config(base_url)) as (url, _):
        await wait_http(url + "/healthz")
        async with aiohttp.ClientSession() as http:
            await first_chunk_seconds(http, url)  # warm-up: the login round trip
            ttfb = [await first_chunk_seconds(http, url) for _ in range(args.turns)]
    solve_s = await median_solve_seconds(args.difficulty, args.turns)
    ttfb.sort()
    p90 = ttfb[min(len(ttfb) - 1, int(len(ttfb) * 0.9))]
    bound = 2 * args.latency + solve_s
    print(f"upstream latency per call: {args.latency * 1000:.0f} ms, PoW difficulty "
          f"{args.difficulty}, {args.turns} turns")
    print(f"time to first chunk: median {statistics.median(ttfb) * 1000:.1f} ms, "
          f"p90 {p90 * 1000:.1f} ms")
    print(f"median solve here: {solve_s * 1000:.1f} ms; two round trips + solve: "
          f"{bound * 1000:.1f} ms; three round trips + solve: "
          f"{(bound + args.latency) * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
