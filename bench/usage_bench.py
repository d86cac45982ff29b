"""What usage accounting costs: per request, per streamed chunk, and the loop.

1. Recording cost: the time :meth:`UsageRecorder.finish` takes on the event
   loop per request (metrics, log record, queue put), p50 / p99 over many
   records; and end-to-end p50 latency of small non-stream requests with
   usage on vs off (each proxy in its own process).
2. Streamed chunks/s through ``/v1/chat/completions`` with usage on vs off.
3. 10,000 rows recorded in bursts while requests run: event-loop lag p50 /
   p99 / max (a 1 ms probe) and how long the writer thread took to land them.

    python bench/usage_bench.py [--chunks 20000] [--runs 3] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import aiohttp

from ds2proxy.app import CORE, create_app, start_server
from ds2proxy.config_store import ConfigStore
from benchkit import (  # noqa: E402
    KEY,
    fake_upstream,
    percentile as pct,
    proxy_config,
    proxy_process,
    sample_record,
    wait_http,
)
from stream_bench import proxy_run  # noqa: E402

ROWS = 10_000
BURST = 10  # rows recorded between two loop turns (~10,000 requests/s)


async def small_requests(url: str, n: int) -> list[float]:
    body = {"model": "deepseek-chat", "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}]}
    times = []
    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            start = time.perf_counter()
            async with http.post(url + "/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {KEY}"}) as resp:
                await resp.read()
            times.append((time.perf_counter() - start) * 1000)
    return times


async def end_to_end(base_url: str, args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        procs = {name: stack.enter_context(proxy_process(proxy_config(base_url, extra={
                     "usage": {"enabled": name == "on"},
                     "metrics": {"enabled": name == "on"}})))[0]
                 for name in ("off", "on")}
        async with aiohttp.ClientSession() as http:
            for url in procs.values():
                await wait_http(url + "/healthz")
                await proxy_run(http, url)  # warm-up: login, first session
            rates: dict[str, list[float]] = {"off": [], "on": []}
            latency: dict[str, list[float]] = {"off": [], "on": []}
            for _ in range(args.runs):  # interleaved, so machine noise hits both
                for name, url in procs.items():
                    n, seconds = await proxy_run(http, url)
                    rates[name].append(n / seconds)
                    latency[name] += await small_requests(url, args.requests // args.runs)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(f"streamed chunks/s, usage off: {off:10.0f}  on: {on:10.0f}  "
          f"on/off: {on / off:.3f}  (median of {args.runs})")
    l_off, l_on = statistics.median(latency["off"]), statistics.median(latency["on"])
    print(f"small request p50 latency, usage off: {l_off:.3f} ms  on: {l_on:.3f} ms  "
          f"difference: {l_on - l_off:+.3f} ms  ({len(latency['on'])} requests each)")


async def in_process(base_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(proxy_config(base_url)))
        app = create_app(ConfigStore.from_sources(str(path), {}))
        server = await start_server(app)
        core = app[CORE]
        try:
            async with aiohttp.ClientSession() as http:
                await proxy_run(http, server.url)
            costs = []
            for i in range(5000):
                record = sample_record(i)
                start = time.perf_counter()
                core.usage.finish(record)
                costs.append((time.perf_counter() - start) * 1000)
            print(f"recording cost on the loop per request: p50 {pct(costs, 50):.4f} ms  "
                  f"p99 {pct(costs, 99):.4f} ms  (5000 records)")
            await core.usage.store.flush()
            await rows_under_load(core, server.url)
        finally:
            await server.close()


async def rows_under_load(core, url: str) -> None:
    lags: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - start) * 1000 - 1)

    async def load() -> None:
        while not stop.is_set():
            await small_requests(url, 1)

    tasks = [asyncio.create_task(probe()), asyncio.create_task(load())]
    await asyncio.sleep(1.0)  # the same load without recording, as a baseline
    baseline, lags[:] = list(lags), []
    store = core.usage.store
    before = store.rows_written
    start = time.perf_counter()
    for burst in range(ROWS // BURST):
        for i in range(BURST):
            core.usage.finish(sample_record(burst * BURST + i))
        await asyncio.sleep(0.001)
    queued = time.perf_counter() - start
    await store.flush()
    landed = time.perf_counter() - start
    stop.set()
    await asyncio.gather(*tasks)
    written = store.rows_written - before
    print(f"{written} rows (>= {ROWS} recorded {BURST} per loop turn, plus the load's own) "
          f"queued in {queued:.2f} s, all written after {landed:.2f} s")
    print(f"event-loop lag, load alone:     p50 {pct(baseline, 50):.3f} ms  "
          f"p99 {pct(baseline, 99):.3f} ms  max {max(baseline):.3f} ms  ({len(baseline)} probes)")
    print(f"event-loop lag, load + 10k rows: p50 {pct(lags, 50):.3f} ms  p99 {pct(lags, 99):.3f} ms  "
          f"max {max(lags):.3f} ms  ({len(lags)} probes)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with fake_upstream(answer_chars=2 * args.chunks, chunk_size=2) as base_url:
        await in_process(base_url)
        await end_to_end(base_url, args)

if __name__ == "__main__":
    asyncio.run(main())
