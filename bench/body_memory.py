"""Peak and settled memory of the ds2proxy process for large request bodies.

The fake DeepSeek upstream and ds2proxy each run in their own process; this
process is the client. Each case starts a fresh ds2proxy and reads its
``/proc/<pid>/status``: VmRSS once warmed up (baseline), VmHWM (peak) after
the requests, and VmRSS a moment after they are answered (settled).

Cases: one valid body of ``--mb`` MB (a single long user message), four such
bodies at once, and one with a made-up credential (pass-through on, the
default), which must be refused before the body is read.

    python bench/body_memory.py [--mb 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import free_port, wait_http  # noqa: E402

EMAIL, PASSWORD = "bench@example.com", "bench-password"
KEY = "bench-key"
MB = 1024 * 1024


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def big_body(size: int) -> bytes:
    """A valid chat request of about ``size`` bytes: one long user message."""
    head = b'{"model":"deepseek-chat","messages":[{"role":"user","content":"'
    tail = b'"}]}'
    words = b"lorem ipsum dolor sit amet "
    fill = (words * (size // len(words) + 1))[:size - len(head) - len(tail)]
    return head + fill + tail




async def post(url: str, body: bytes, credential: str) -> int:
    headers = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            async with http.post(url + "/v1/chat/completions", data=body,
                                 headers=headers) as resp:
                await resp.read()
                return resp.status
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}"  # type: ignore[return-value]


Case = Callable[[str], Awaitable[list[int]]]


async def measure(name: str, base_url: str, case: Case, tmp: Path) -> None:
    port = free_port()
    config = tmp / f"config-{port}.json"
    config.write_text(json.dumps({
        "keys": [KEY], "accounts": [{"email": EMAIL, "password": PASSWORD}],
        "upstream": {"base_url": base_url}, "runtime": {"account_max_inflight": 4}}))
    env = {**os.environ, "DS2PROXY_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "ds2proxy", "--config", str(config),
                             "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_http(url + "/healthz")
        await post(url, big_body(1024), KEY)  # warm-up: login, imports, first turn
        base = status_kb(proc.pid, "VmRSS")
        statuses = await case(url)
        peak = status_kb(proc.pid, "VmHWM")
        await asyncio.sleep(1.0)  # let the allocator hand memory back
        after = status_kb(proc.pid, "VmRSS")
    finally:
        proc.terminate()
        proc.wait()
    print(f"{name:<34} status {statuses}  baseline {base / 1024:6.0f} MB  "
          f"peak {peak / 1024:6.0f} MB (+{(peak - base) / 1024:4.0f})  "
          f"after {after / 1024:6.0f} MB (+{(after - base) / 1024:4.0f})")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50, help="body size in MB")
    args = parser.parse_args()
    body = big_body(args.mb * MB)

    async def one(url: str) -> list[int]:
        return [await post(url, body, KEY)]

    async def four(url: str) -> list[int]:
        return list(await asyncio.gather(*(post(url, body, KEY) for _ in range(4))))

    async def bad_credential(url: str) -> list[int]:
        return [await post(url, body, "made-up-token")]

    fake_port = free_port()
    fake = subprocess.Popen([sys.executable, "-m", "ds2proxy.testing", "--port", str(fake_port),
                             "--difficulty", "1000", "--account", f"{EMAIL}:{PASSWORD}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert fake.stdout is not None
    fake.stdout.readline()
    base_url = f"http://127.0.0.1:{fake_port}"
    print(f"body: {len(body) / MB:.1f} MB; RSS of the ds2proxy process")
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await measure(f"one {args.mb} MB body", base_url, one, Path(tmp))
            await measure(f"four {args.mb} MB bodies at once", base_url, four, Path(tmp))
            await measure("made-up credential", base_url, bad_credential, Path(tmp))
    finally:
        fake.terminate()
        fake.wait()
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
