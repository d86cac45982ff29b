"""What a provider route adds: the same requests sent to the fake
OpenAI-compatible provider directly and through ds2proxy's route to it.

    python bench/provider_bench.py [--requests 200] [--stream-chars 40000]

``--no-usage`` turns the request log off, to see the route alone.
Prints the p50 and p90 time per non-stream request, direct and routed, and
the p50 added by the route (target: at most 1 ms); then the streamed chunks
per second of one long answer, direct and routed, and their ratio. The
fake provider and the proxy each run in their own process.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    auth,
    cpu_seconds,
    fake_upstream,
    free_port,
    proxy_config,
    proxy_process,
    spawn,
    stop,
    wait_http,
)

SHORT, LONG = "bench-short", "bench-long"


@contextmanager
def fake_provider(model: str, answer_chars: int, chunk_chars: int) -> Iterator[str]:
    """A fake provider in its own process (every answer ``answer_chars``
    long, 0: one short sentence); yields its ``…/v1`` URL."""
    port = free_port()
    proc = spawn([sys.executable, "-m", "ds2proxy.testing.fake_provider", "--port", str(port),
                  "--model", model, "--answer-chars", str(answer_chars),
                  "--chunk-chars", str(chunk_chars)], "provider on")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


def body(model: str, stream: bool) -> dict:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


async def one(http: aiohttp.ClientSession, url: str, headers: dict) -> float:
    start = time.perf_counter()
    async with http.post(url + "/chat/completions", json=body(SHORT, False),
                         headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}")
    return time.perf_counter() - start


async def latencies(http: aiohttp.ClientSession, direct: str, routed: str, count: int
                    ) -> tuple[list[float], list[float]]:
    """Alternate direct and routed requests, so both meet the same machine load."""
    for _ in range(20):  # warm-up: connections, caches
        await one(http, direct, {})
        await one(http, routed, auth())
    a, b = [], []
    for _ in range(count):
        a.append(await one(http, direct, {}))
        b.append(await one(http, routed, auth()))
    return a, b


async def chunks_per_second(http: aiohttp.ClientSession, url: str, headers: dict) -> float:
    start, chunks = time.perf_counter(), 0
    async with http.post(url + "/chat/completions", json=body(LONG, True), headers=headers) as resp:
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"content"' in line:
                chunks += 1
    return chunks / (time.perf_counter() - start)


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


async def measure(short: str, long: str, proxy: str, pid: int, requests: int,
                  rounds: int) -> None:
    routed = proxy + "/v1"
    await wait_http(proxy + "/healthz")
    async with aiohttp.ClientSession() as http:
        cpu = cpu_seconds(pid)
        a, b = await latencies(http, short, routed, requests)
        cpu = cpu_seconds(pid) - cpu
        print(f"non-stream, {requests} requests each (ms): direct p50 {pct(a, 50):.3f} "
              f"p90 {pct(a, 90):.3f} | routed p50 {pct(b, 50):.3f} p90 {pct(b, 90):.3f}")
        print(f"added by the route: p50 {pct(b, 50) - pct(a, 50):.3f} ms (target <= 1 ms); "
              f"proxy CPU per routed request {cpu / (requests + 20) * 1000:.3f} ms")
        direct_rates, routed_rates = [], []
        for _ in range(rounds):
            direct_rates.append(await chunks_per_second(http, long, {}))
            routed_rates.append(await chunks_per_second(http, routed, auth()))
        d, r = statistics.median(direct_rates), statistics.median(routed_rates)
        print(f"streamed chunks/s (median of {rounds}): direct {d:,.0f} | routed {r:,.0f} | "
              f"ratio {r / d:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--stream-chars", type=int, default=40000)
    parser.add_argument("--chunk-chars", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-usage", action="store_true",
                        help="turn usage recording off (the SQLite request log)")
    args = parser.parse_args()
    with fake_upstream() as upstream, fake_provider(SHORT, 0, args.chunk_chars) as short, \
            fake_provider(LONG, args.stream_chars, args.chunk_chars) as long:
        config = proxy_config(upstream, extra={"providers": [
            {"name": "short", "base_url": short, "models": [SHORT]},
            {"name": "long", "base_url": long, "models": [LONG]}],
            "usage": {"enabled": not args.no_usage}})
        with proxy_process(config) as (proxy, pid):
            asyncio.run(measure(short, long, proxy, pid, args.requests, args.rounds))


if __name__ == "__main__":
    main()
