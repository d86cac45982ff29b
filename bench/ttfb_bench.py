"""Time to first byte of a turn when every upstream call costs a round trip.

The fake upstream (own process) waits ``--latency`` before answering each
call. A turn needs a chat session, a PoW challenge (then its solve) and the
completion; with the session and the challenge overlapped the first answer
chunk arrives after two round trips plus the solve, not three.

    python bench/ttfb_bench.py [--latency 0.05] [--turns 20] [--difficulty 144000]

Prints the median and p90 time to the first answer chunk through ds2proxy
and what it is made of, each measured: a round trip (one upstream call timed
from this process, same latency and HTTP stack) and each turn's own solve
time (the proxy's ``ds2proxy_pow_solve_seconds`` metric, read between turns).
Then the median of each turn's time beyond two round trips plus its solve,
through ds2proxy and for the same turn made directly from this process
(session and challenge overlapped, solve, completion, first answer line: the
upstream's floor, its own work on each call included), and the difference:
what ds2proxy adds.
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
    PASSWORD,
    auth,
    chat_body,
    emails,
    fake_upstream,
    proxy_config,
    proxy_process,
    wait_http,
)

from ds2proxy.config import AccountConfig, UpstreamSettings  # noqa: E402
from ds2proxy.pow import encode_header, solve  # noqa: E402
from ds2proxy.upstream.client import COMPLETION_PATH, DeepSeekClient  # noqa: E402

METRICS_TOKEN = "bench-metrics"


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


async def direct_seconds(base_url: str, turns: int
                         ) -> tuple[float, list[tuple[float, float]]]:
    """Median time of one upstream call (a new chat session) from here, and
    ``turns`` turns made directly: (first answer line, solve) seconds each."""
    async with aiohttp.ClientSession() as http:
        client = DeepSeekClient(http, UpstreamSettings(base_url=base_url))
        token = await client.login(AccountConfig(email=emails(1)[0], password=PASSWORD))
        calls = []
        for _ in range(turns):
            start = time.perf_counter()
            await client.create_session(token)
            calls.append(time.perf_counter() - start)
        made = [await direct_turn(client, token) for _ in range(turns)]
    return statistics.median(calls), made


async def direct_turn(client: DeepSeekClient, token: str) -> tuple[float, float]:
    """Session and challenge at once, the solve, the completion: seconds to
    its first answer line, and the solve's seconds."""
    solve_s = 0.0

    async def solved() -> str:
        nonlocal solve_s
        challenge = await client.create_pow_challenge(token)
        began = time.perf_counter()
        answer = await solve(challenge)
        solve_s = time.perf_counter() - began
        return encode_header(challenge, answer)

    start = time.perf_counter()
    session, header = await asyncio.gather(client.create_session(token), solved())
    body = {"chat_session_id": session, "model_type": "default", "parent_message_id": None,
            "prompt": "chars=64", "ref_file_ids": [], "thinking_enabled": False,
            "search_enabled": False}
    stream = await client.open_stream(COMPLETION_PATH, token, header, body)
    first = 0.0
    async for line in stream.lines():
        if not first and (line.startswith('data: {"v":"')
                          or line.startswith('data: {"p":"response/fr')):
            first = time.perf_counter() - start
    stream.release()
    return first, solve_s


async def proxy_turn(http: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """One turn through ds2proxy: (first chunk, the proxy's solve) seconds."""
    before = await solve_totals(http, url)
    first = await first_chunk_seconds(http, url)
    after = await solve_totals(http, url)
    if after[1] - before[1] != 1:
        raise RuntimeError(f"expected one solve in the turn, the proxy counted "
                           f"{after[1] - before[1]}")
    return first, after[0] - before[0]


async def solve_totals(http: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    """The proxy's PoW solve seconds and solve count so far."""
    async with http.get(url + "/metrics",
                        headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as resp:
        text = await resp.text()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("ds2proxy_pow_solve_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("ds2proxy_pow_solve_seconds_count"):
            count = float(line.split()[-1])
    return total, int(count)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per upstream call")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--difficulty", type=int, default=144000)
    args = parser.parse_args()

    with fake_upstream(latency=args.latency, difficulty=args.difficulty) as base_url:
        config = proxy_config(base_url, extra={"metrics": {"token": METRICS_TOKEN}})
        with proxy_process(config) as (url, _):
            await wait_http(url + "/healthz")
            async with aiohttp.ClientSession() as http:
                await first_chunk_seconds(http, url)  # warm-up: the login round trip
                proxied = [await proxy_turn(http, url) for _ in range(args.turns)]
        rtt, direct = await direct_seconds(base_url, args.turns)
    ttfb = sorted(first for first, _ in proxied)
    median = statistics.median(ttfb)
    p90 = ttfb[min(len(ttfb) - 1, int(len(ttfb) * 0.9))]
    solve_s = statistics.mean(solved for _, solved in proxied)
    beyond = statistics.median(first - 2 * rtt - solved for first, solved in proxied)
    direct_beyond = statistics.median(first - 2 * rtt - solved for first, solved in direct)
    print(f"upstream latency per call: {args.latency * 1000:.0f} ms, PoW difficulty "
          f"{args.difficulty}, {args.turns} turns")
    print(f"time to first chunk: median {median * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms")
    print(f"one round trip (measured): {rtt * 1000:.1f} ms; mean solve of these turns: "
          f"{solve_s * 1000:.1f} ms; two round trips + that solve: "
          f"{(2 * rtt + solve_s) * 1000:.1f} ms, three: {(3 * rtt + solve_s) * 1000:.1f} ms")
    print(f"each turn beyond two round trips + its own solve (median): through ds2proxy "
          f"{beyond * 1000:.1f} ms, made directly {direct_beyond * 1000:.1f} ms; ds2proxy "
          f"adds {(beyond - direct_beyond) * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
