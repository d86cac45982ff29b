"""Streamed chunks per second: straight from the fake upstream vs through ds2proxy.

The fake DeepSeek upstream and ds2proxy each run in their own process; this
process is the client. One answer of ``CHUNKS`` tokens is streamed with no
delay, first read directly off the upstream protocol, then through
``/v1/chat/completions`` (stream). Prints chunks/s for both and their ratio.

    python bench/stream_bench.py [--chunks 20000] [--runs 3] [--profile 30]

``--profile N`` instead serves ds2proxy in this process under cProfile (the
fake upstream stays in its own process) and prints the N costliest functions
of the proxy side, to see where per-chunk time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from ds2proxy.app import create_app, start_server
from ds2proxy.config import AccountConfig, ConfigStore, UpstreamSettings
from ds2proxy.pow import encode_header, solve
from ds2proxy.upstream.client import COMPLETION_PATH, DeepSeekClient
from ds2proxy.upstream.lines import iter_lines

EMAIL, PASSWORD = "bench@example.com", "bench-password"
KEY = "bench-key"

FAKE_PROGRAM = """
import asyncio, sys
from ds2proxy.testing import FakeAccount, FakeDeepSeek, Scripted
async def main():
    answer = "ab" * int(sys.argv[2])
    fake = FakeDeepSeek([FakeAccount({pw!r}, email={email!r})], difficulty=1000,
                        default_script=Scripted(answer=answer, chunk_size=2, tip=False))
    await fake.start(port=int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
""".format(pw=PASSWORD, email=EMAIL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], ready: str | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if ready:
        for line in proc.stdout:
            if ready in line:
                break
    return proc


async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never came up")


async def direct_run(base_url: str) -> tuple[int, float]:
    async with aiohttp.ClientSession() as http:
        client = DeepSeekClient(http, UpstreamSettings(base_url=base_url))
        token = await client.login(AccountConfig(email=EMAIL, password=PASSWORD))
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


async def proxy_run(url: str) -> tuple[int, float]:
    body = {"model": "deepseek-chat", "stream": True,
            "messages": [{"role": "user", "content": "bench"}]}
    async with aiohttp.ClientSession() as http:
        start = time.perf_counter()
        chunks = 0
        async with http.post(url + "/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {KEY}"}) as resp:
            # The same line reader as the direct run, so only the proxy differs.
            async for line in iter_lines(resp):
                if line.startswith("data: {") and '"content"' in line:
                    chunks += 1
        return chunks, time.perf_counter() - start


def proxy_config(base_url: str) -> dict:
    return {"keys": [KEY], "accounts": [{"email": EMAIL, "password": PASSWORD}],
            "upstream": {"base_url": base_url}, "runtime": {"account_max_inflight": 4}}


async def profile(base_url: str, runs: int, top: int) -> None:
    """Serve the proxy in this process and profile only the streamed runs."""
    server = await start_server(create_app(ConfigStore(proxy_config(base_url))))
    try:
        await proxy_run(server.url)  # warm-up outside the profile
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(runs):
            await proxy_run(server.url)
        profiler.disable()
    finally:
        await server.close()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile an in-process proxy and print the top N functions")
    args = parser.parse_args()

    fake_port, proxy_port = free_port(), free_port()
    fake = spawn([sys.executable, "-c", FAKE_PROGRAM, str(fake_port), str(args.chunks)], "ready")
    base_url = f"http://127.0.0.1:{fake_port}"
    if args.profile:
        try:
            await profile(base_url, args.runs, args.profile)
        finally:
            fake.terminate()
            fake.wait()
        return
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(proxy_config(base_url)))
        env = {**os.environ, "DS2PROXY_LOG_LEVEL": "WARNING"}
        proxy = subprocess.Popen([sys.executable, "-m", "ds2proxy", "--config", str(config),
                                  "--port", str(proxy_port)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{proxy_port}"
        try:
            await wait_http(url + "/healthz")
            await proxy_run(url)  # warm-up: login, first session
            direct = [await direct_run(base_url) for _ in range(args.runs)]
            through = [await proxy_run(url) for _ in range(args.runs)]
        finally:
            proxy.terminate()
            fake.terminate()
            proxy.wait()
            fake.wait()

    def rate(runs: list[tuple[int, float]]) -> tuple[int, float]:
        return runs[0][0], statistics.median(n / t for n, t in runs)

    n_direct, r_direct = rate(direct)
    n_proxy, r_proxy = rate(through)
    print(f"chunks per answer: upstream {n_direct}, client {n_proxy}")
    print(f"direct from fake upstream: {r_direct:10.0f} chunks/s  (median of {args.runs})")
    print(f"through ds2proxy:          {r_proxy:10.0f} chunks/s  (median of {args.runs})")
    print(f"proxy / direct:            {r_proxy / r_direct:10.2f}")


if __name__ == "__main__":
    asyncio.run(main())
