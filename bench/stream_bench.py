"""Streamed chunks per second: straight from the fake upstream vs through
ds2proxy, and what each optional feature costs.

The fake DeepSeek upstream and ds2proxy each run in their own process; this
process is the client. One answer of ``--chunks`` tokens is streamed with no
delay, first read directly off the upstream protocol, then through
``/v1/chat/completions`` (stream); both sides use the same line reader. For
each configuration it prints chunks/s both ways and their ratio, the proxy's
CPU per chunk (from /proc, steady under a busy machine) and the p50 time of
a short non-stream turn.

    python bench/stream_bench.py [--chunks 20000] [--runs 3] [--turns 40]
        [--features all|none|NAME,...] [--feature NAME ON_JSON [OFF_JSON]]
        [--profile 30]

Features are config switches: each runs on and off (two proxies side by side,
taking turns), everything else as the baseline; ``--features none`` measures
the baseline alone. The built-in ones are listed in ``FEATURES``; any other
(a new flag) is added from the command line, e.g.
``--feature NAME '{"section": {"flag": true}}' '{"section": {"flag": false}}'``
(OFF_JSON defaults to no change). ``--profile N`` instead serves ds2proxy in
this process under cProfile and prints the N costliest functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    FAKE_PIDS,
    PASSWORD,
    auth,
    chat_body,
    cpu_seconds,
    emails,
    fake_upstream,
    proxy_config,
    proxy_process,
    wait_http,
)

from ds2proxy.app import create_app, start_server  # noqa: E402
from ds2proxy.config import AccountConfig, UpstreamSettings  # noqa: E402
from ds2proxy.config_store import ConfigStore  # noqa: E402
from ds2proxy.pow import encode_header, solve  # noqa: E402
from ds2proxy.upstream.client import COMPLETION_PATH, DeepSeekClient  # noqa: E402
from ds2proxy.upstream.lines import iter_lines  # noqa: E402

# name -> (config when on, config when off). Off is what the feature's
# default is; add a feature here when it gets a switch.
FEATURES: dict[str, tuple[dict, dict]] = {
    "history_file": ({"history_file": {"enabled": True, "min_prompt_chars": 0}},
                     {"history_file": {"enabled": False}}),
    "session_cleanup": ({"upstream": {"session_cleanup": "single"}},
                        {"upstream": {"session_cleanup": "none"}}),
    "dev_captures": ({"dev_captures": {"enabled": True}}, {"dev_captures": {"enabled": False}}),
    "usage": ({"usage": {"enabled": True}}, {"usage": {"enabled": False}}),
    "health": ({"health": {"enabled": True}}, {"health": {"enabled": False}}),
}


@dataclass
class Figures:
    direct: float      # chunks/s read straight off the fake
    proxy: float       # chunks/s through ds2proxy
    cpu_us: float      # proxy CPU per streamed chunk
    turn_ms: float     # p50 of a short non-stream turn
    # CPU µs per chunk of each process: fake and client in the direct runs,
    # fake and client in the proxied runs.
    direct_cpu: tuple[float, float] = (0.0, 0.0)
    proxied_cpu: tuple[float, float] = (0.0, 0.0)

    def cpu_row(self, label: str) -> str:
        """CPU per chunk of every process, and the ratio it allows when each
        process has a core to itself (a busy machine does not move it)."""
        fake_d, client_d = self.direct_cpu
        fake_p, client_p = self.proxied_cpu
        bound = max(fake_d, client_d) / max(fake_p, client_p, self.cpu_us)
        return (f"{label}: CPU µs/chunk direct: fake {fake_d:.2f}, client {client_d:.2f}; "
                f"through the proxy: fake {fake_p:.2f}, proxy {self.cpu_us:.2f}, client "
                f"{client_p:.2f} -> ratio with a core per process {bound:.2f}")

    def row(self, label: str) -> str:
        return (f"{label:<24} {self.proxy:>9.0f} {self.direct:>9.0f} "
                f"{self.proxy / self.direct:>6.2f} {self.cpu_us:>9.2f} {self.turn_ms:>9.2f}")


HEADER = (f"{'configuration':<24} {'proxy/s':>9} {'direct/s':>9} {'ratio':>6} "
          f"{'µs/chunk':>9} {'p50 ms':>9}")


async def direct_run(base_url: str) -> tuple[int, float]:
    async with aiohttp.ClientSession() as http:
        client = DeepSeekClient(http, UpstreamSettings(base_url=base_url))
        token = await client.login(AccountConfig(email=emails(1)[0], password=PASSWORD))
        session = await client.create_session(token)
        challenge = await client.create_pow_challenge(token)
        header = encode_header(challenge, await solve(challenge))
        body = {"chat_session_id": session, "model_type": "default", "parent_message_id": None,
                "prompt": "bench", "ref_file_ids": [], "thinking_enabled": False,
                "search_enabled": False}
        start = time.perf_counter()
        stream = await client.open_stream(COMPLETION_PATH, token, header, body)
        chunks = 0
        async for line in stream.lines():
            if line.startswith("data: {\"v\":\"") or line.startswith("data: {\"p\":\"response/fr"):
                chunks += 1
        stream.release()
        return chunks, time.perf_counter() - start


async def proxy_run(http: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    start = time.perf_counter()
    chunks = 0
    async with http.post(url + "/v1/chat/completions", json=chat_body(True),
                         headers=auth()) as resp:
        # The same line reader as the direct run, so only the proxy differs.
        async for line in iter_lines(resp):
            if line.startswith("data: {") and '"content"' in line:
                chunks += 1
    return chunks, time.perf_counter() - start


async def short_turn_ms(http: aiohttp.ClientSession, url: str) -> float:
    start = time.perf_counter()
    async with http.post(url + "/v1/chat/completions", json=chat_body(False, "chars=64"),
                         headers=auth()) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"proxy answered {resp.status}")
    return (time.perf_counter() - start) * 1000


def rate(runs: list[tuple[int, float]]) -> float:
    return statistics.median(n / t for n, t in runs)


class CpuMeter:
    """CPU seconds of the fake (from /proc) and of this process, per phase."""

    def __init__(self, fake_pid: int) -> None:
        self.fake_pid = fake_pid
        self.spent = {"direct": [0.0, 0.0], "proxied": [0.0, 0.0]}

    def start(self) -> tuple[float, float]:
        return cpu_seconds(self.fake_pid), time.process_time()

    def stop(self, phase: str, began: tuple[float, float]) -> None:
        self.spent[phase][0] += cpu_seconds(self.fake_pid) - began[0]
        self.spent[phase][1] += time.process_time() - began[1]

    def per_chunk(self, phase: str, chunks: int) -> tuple[float, float]:
        fake, client = self.spent[phase]
        return fake / chunks * 1e6, client / chunks * 1e6


async def measure(base_url: str, variants: list[dict], args: argparse.Namespace
                  ) -> list[Figures]:
    """Figures for each config in ``variants``, their proxies running side by
    side and taking turns, so a busy moment on the machine hits them alike."""
    with ExitStack() as stack:
        proxies = [stack.enter_context(proxy_process(proxy_config(base_url, extra=v)))
                   for v in variants]
        for url, _ in proxies:
            await wait_http(url + "/healthz")
        async with aiohttp.ClientSession() as http:
            direct: list[tuple[int, float]] = []
            through: list[list[tuple[int, float]]] = [[] for _ in proxies]
            cpu = [0.0] * len(proxies)
            turns: list[list[float]] = [[] for _ in proxies]
            for url, _ in proxies:
                await proxy_run(http, url)  # warm-up: login, first session
            meter = CpuMeter(FAKE_PIDS[base_url])
            for _ in range(args.runs):
                began = meter.start()
                direct.append(await direct_run(base_url))
                meter.stop("direct", began)
                for i, (url, pid) in enumerate(proxies):
                    before, began = cpu_seconds(pid), meter.start()
                    through[i].append(await proxy_run(http, url))
                    cpu[i] += cpu_seconds(pid) - before
                    meter.stop("proxied", began)
            for _ in range(args.turns):
                for i, (url, _) in enumerate(proxies):
                    turns[i].append(await short_turn_ms(http, url))
    direct_cpu = meter.per_chunk("direct", sum(n for n, _ in direct))
    proxied_cpu = meter.per_chunk("proxied", sum(n for runs in through for n, _ in runs))
    return [Figures(rate(direct), rate(runs), spent / sum(n for n, _ in runs) * 1e6,
                    statistics.median(times), direct_cpu, proxied_cpu)
            for runs, spent, times in zip(through, cpu, turns)]


async def profile(base_url: str, runs: int, top: int) -> None:
    """Serve the proxy in this process and profile only the streamed runs."""
    server = await start_server(create_app(ConfigStore(proxy_config(base_url))))
    try:
        async with aiohttp.ClientSession() as http:
            await proxy_run(http, server.url)  # warm-up outside the profile
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(runs):
                await proxy_run(http, server.url)
            profiler.disable()
    finally:
        await server.close()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def chosen_features(args: argparse.Namespace) -> dict[str, tuple[dict, dict]]:
    features = dict(FEATURES)
    for spec in args.feature or []:
        if len(spec) not in (2, 3):
            raise SystemExit("--feature takes NAME ON_JSON [OFF_JSON]")
        features[spec[0]] = (json.loads(spec[1]), json.loads(spec[2]) if len(spec) == 3 else {})
    if args.features == "none":
        return {}
    if args.features == "all":
        return features
    names = args.features.split(",")
    unknown = [n for n in names if n not in features]
    if unknown:
        raise SystemExit(f"unknown features {unknown}; known: {sorted(features)}")
    return {n: features[n] for n in names}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--turns", type=int, default=40, help="short turns for the p50")
    parser.add_argument("--features", default="all", help="all, none or NAME,NAME")
    parser.add_argument("--feature", action="append", nargs="+", metavar="ARG",
                        help="NAME ON_JSON [OFF_JSON]: a config switch to measure")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile an in-process proxy and print the top N functions")
    args = parser.parse_args()
    features = chosen_features(args)

    with fake_upstream(answer_chars=2 * args.chunks, chunk_size=2) as base_url:
        if args.profile:
            await profile(base_url, args.runs, args.profile)
            return
        print(f"{args.chunks} chunks per answer, median of {args.runs} runs; "
              f"p50 over {args.turns} short turns")
        print(HEADER)
        baseline = (await measure(base_url, [{}], args))[0]
        print(baseline.row("baseline"), flush=True)
        for name, (on, off) in features.items():
            fig_on, fig_off = await measure(base_url, [on, off], args)
            print(fig_on.row(f"{name} on"), flush=True)
            print(fig_off.row(f"{name} off"), flush=True)
            print(f"{'':<24} {name} on: {fig_on.turn_ms - fig_off.turn_ms:+.2f} ms p50 per "
                  f"turn, {fig_on.cpu_us - fig_off.cpu_us:+.2f} µs per chunk", flush=True)
        print(baseline.cpu_row("baseline"))


if __name__ == "__main__":
    asyncio.run(main())
