"""Proxy CPU per streamed chunk against the answer's length, stream and non-stream.

A cost that grows with the text already received (rebuilding it on every
chunk) shows as a per-chunk figure that rises with the length; a linear
path keeps it flat. The fake upstream and ds2proxy run in their own
processes; the proxy's CPU is read from /proc around each batch of requests.

    python bench/length_scan.py [--lengths 40,80,160,320] [--chunk-size 4] [--repeat 3]

Prints per-chunk CPU (µs) per answer length (KB) and the ratio of the
longest to the shortest; the target is at most 1.2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    auth,
    chat_body,
    cpu_seconds,
    fake_upstream,
    proxy_config,
    proxy_process,
    wait_http,
)


async def one_request(http: aiohttp.ClientSession, url: str, chars: int, stream: bool) -> int:
    """Run one turn to its end; returns the answer characters received."""
    body = chat_body(stream, f"chars={chars}")
    async with http.post(url + "/v1/chat/completions", json=body, headers=auth()) as resp:
        if resp.status != 200:
            raise RuntimeError(f"proxy answered {resp.status}: {await resp.text()}")
        if stream:
            received = 0
            async for _ in resp.content.iter_any():
                received += 1
            return received
        doc = await resp.json()
        return len(doc["choices"][0]["message"]["content"])


async def per_chunk_us(http: aiohttp.ClientSession, url: str, pid: int, kb: int, longest: int,
                       chunk_size: int, stream: bool, repeat: int) -> float:
    """Best of ``repeat`` batches; a batch holds as many characters as one longest answer."""
    chars = kb * 1000
    batch = max(1, longest // kb)
    best = float("inf")
    for _ in range(repeat):
        before = cpu_seconds(pid)
        for _ in range(batch):
            await one_request(http, url, chars, stream)
        spent = cpu_seconds(pid) - before
        best = min(best, spent / (batch * chars / chunk_size) * 1e6)
    return best


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="40,80,160,320", help="answer lengths in KB")
    parser.add_argument("--chunk-size", type=int, default=4, help="characters per chunk")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]

    with fake_upstream(chunk_size=args.chunk_size) as base_url, \
            proxy_process(proxy_config(base_url)) as (url, pid):
        await wait_http(url + "/healthz")
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await one_request(http, url, 1000, True)  # warm-up: login, imports
            print(f"chunk size {args.chunk_size} chars; proxy CPU per chunk, best of "
                  f"{args.repeat}")
            print(f"{'answer KB':>10} {'stream µs':>10} {'non-stream µs':>14}")
            rows = []
            for kb in lengths:
                figures = [await per_chunk_us(http, url, pid, kb, max(lengths), args.chunk_size,
                                              stream, args.repeat) for stream in (True, False)]
                rows.append(figures)
                print(f"{kb:>10} {figures[0]:>10.2f} {figures[1]:>14.2f}", flush=True)
    first, last = rows[0], rows[-1]
    print(f"{lengths[-1]} KB / {lengths[0]} KB: stream {last[0] / first[0]:.2f}x, "
          f"non-stream {last[1] / first[1]:.2f}x (target <= 1.2)")


if __name__ == "__main__":
    asyncio.run(main())
