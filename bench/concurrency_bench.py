"""A thousand streams at once: first-chunk delay and the proxy's memory.

The fake upstream (own process) holds every completion until all of the
burst's streams are open, then answers each with a first chunk carrying the
time it was sent. The client (this process) records when that chunk reached
it through ds2proxy. The account pool is sized to admit the whole burst, so
any wait is a cap below it. Two identical bursts run; the proxy's peak RSS
is read after each (a second burst should not raise it), both the process's
peak so far and the burst's own (the kernel's high-water mark is reset before
each burst where it allows, ``/proc/<pid>/clear_refs``).

    python bench/concurrency_bench.py [--streams 1000] [--bursts 2] [--heap]

With ``--heap`` the proxy runs under ``heap_probe.py`` and, after each
burst has drained, what its allocators hold is printed too (pymalloc arenas,
glibc bytes in use): RSS counts the pages touched, and may differ between two
identical bursts by a megabyte or so while the allocators hold no more.

Loopback only; the PoW difficulty is low so the figures are about streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import re
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
    memory_mb,
    proxy_config,
    proxy_process,
    wait_http,
)

PER_ACCOUNT = 64  # the most one account may run at once
STAMP = re.compile(rb'"content":"(\d+\.\d+)\|')

# Completions wait until opts["burst"] are open (or a minute passed), then the
# first chunk of each is the send time, "<epoch seconds>|".
GATHERING_FAKE = """
import asyncio, json, sys, time
from ds2proxy.testing import FakeAccount, FakeDeepSeek, Scripted
opts = json.loads(sys.argv[2])
class Gathering(FakeDeepSeek):
    waiting = 0
    async def completion(self, request):
        await self.json_body(request)
        self.waiting += 1
        if self.waiting >= opts["burst"]:
            self.all_open.set()
        try:
            await asyncio.wait_for(self.all_open.wait(), 60)
        except asyncio.TimeoutError:
            pass
        self.waiting -= 1
        if self.waiting == 0:
            self.all_open.clear()
        chunks = [f"{time.time():.6f}|"] + ["ab"] * opts["chunks"]
        self.enqueue(Scripted(answer=chunks, tip=False))
        return await super().completion(request)
async def main():
    accounts = [FakeAccount(opts["password"], email=e) for e in opts["emails"]]
    fake = Gathering(accounts, difficulty=opts["difficulty"], latency=opts["latency"])
    fake.all_open = asyncio.Event()
    await fake.start(port=int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def one_stream(http: aiohttp.ClientSession, url: str) -> float:
    """Seconds from the fake sending the first chunk to this client reading it."""
    async with http.post(url + "/v1/chat/completions", json=chat_body(True),
                         headers=auth()) as resp:
        if resp.status != 200:
            raise RuntimeError(f"proxy answered {resp.status}: {await resp.text()}")
        seen, delay = b"", -1.0
        async for chunk in resp.content.iter_any():  # light, so the client is not the limit
            if delay < 0:
                seen += chunk
                stamp = STAMP.search(seen)
                if stamp:
                    delay = time.time() - float(stamp.group(1))
        return delay


def reset_peak(pid: int) -> bool:
    """Restart the kernel's peak-RSS count for ``pid``; False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def burst(url: str, pid: int, streams: int) -> tuple[list[float], float, int]:
    """Delays sorted, seconds taken, and the most file descriptors the proxy held."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    most_fds = 0

    async def sample() -> None:
        nonlocal most_fds
        while True:
            most_fds = max(most_fds, open_fds(pid))
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            start = time.perf_counter()
            delays = await asyncio.gather(*(one_stream(http, url) for _ in range(streams)))
            return sorted(delays), time.perf_counter() - start, most_fds
    finally:
        sampler.cancel()


HEAP_PROBE = str(Path(__file__).resolve().parent / "heap_probe.py")


async def heap_report(pid: int, path: Path) -> dict:
    """Ask the proxy under ``heap_probe.py`` what its allocators hold."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    for _ in range(200):
        if path.exists():
            return json.loads(path.read_text())
        await asyncio.sleep(0.05)
    raise RuntimeError("the proxy wrote no heap report")


def describe_heap(now: dict, before: dict) -> str:
    most, was = (now["pymalloc"].get("arenas_highwater", 0),
                 before["pymalloc"].get("arenas_highwater", 0))
    text = (f"pymalloc arenas {now['pymalloc'].get('arenas', 0)}, "
            f"most ever {most} ({most - was:+d})")
    if now["glibc"]:
        in_use = now["glibc"]["in_use"] / 2**20
        grew = in_use - before["glibc"]["in_use"] / 2**20
        text += f", glibc in use {in_use:.1f} MB ({grew:+.2f})"
    return text


def gathering_fake(opts_burst: int, chunks: int) -> str:
    return GATHERING_FAKE.replace('opts["burst"]', str(opts_burst)).replace(
        'opts["chunks"]', str(chunks))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=50, help="chunks after the first")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds between bursts (idle upstream connections expire after 15)")
    parser.add_argument("--heap", action="store_true",
                        help="also print what the proxy's allocators hold after each burst")
    args = parser.parse_args()
    accounts = -(-args.streams // PER_ACCOUNT)
    heap_file = Path(tempfile.mkdtemp()) / "heap.json"
    launcher = [HEAP_PROBE] if args.heap else None
    heap_env = {"BENCH_HEAP_OUT": str(heap_file)} if args.heap else None

    program = gathering_fake(args.streams, args.chunks)
    with fake_upstream(accounts=accounts, program=program) as base_url, \
            proxy_process(proxy_config(base_url, accounts=accounts, per_account=PER_ACCOUNT,
                                       extra={"server": {"max_connections": 2 * args.streams}}),
                          launcher=launcher, env=heap_env) as (url, pid):
        await wait_http(url + "/healthz")
        rss, process_peak = memory_mb(pid)
        print(f"{args.streams} concurrent streams, {accounts} accounts x {PER_ACCOUNT}; "
              f"proxy RSS at start {rss:.1f} MB")
        heap = await heap_report(pid, heap_file) if args.heap else {}
        if heap:
            print(f"  at start: {describe_heap(heap, heap)}")
        for n in range(1, args.bursts + 1):
            if n > 1 and args.pause:
                await asyncio.sleep(args.pause)
            own = reset_peak(pid)
            delays, took, fds = await burst(url, pid, args.streams)
            rss, peak = memory_mb(pid)
            process_peak = max(process_peak, peak)
            late = sum(d > 2.0 for d in delays)
            burst_peak = f"this burst's peak {peak:.1f} MB, " if own else ""
            print(f"burst {n}: {took:.1f} s; first chunk after the fake sent it: "
                  f"p50 {statistics.median(delays) * 1000:.0f} ms, "
                  f"max {delays[-1] * 1000:.0f} ms, over 2 s: {late}; "
                  f"proxy RSS {rss:.1f} MB, {burst_peak}peak {process_peak:.1f} MB, "
                  f"most fds {fds}", flush=True)
            if args.heap:
                await asyncio.sleep(3)  # the proxy's burst trimmer runs once streams end
                now = await heap_report(pid, heap_file)
                print(f"  after burst {n}: {describe_heap(now, heap)}", flush=True)
                heap = now


if __name__ == "__main__":
    asyncio.run(main())
