"""What the benchmarks share: ports, child processes, a proxy process and its
CPU and memory figures, and a fake upstream run in its own process.

Every process listens on 127.0.0.1 only. ``fake_program`` is a small script
run with ``python -c``; its options come as JSON so each bench can shape the
answer, the accounts and the per-call latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from ds2proxy.doc_merge import deep_merge
from ds2proxy.request_record import RequestRecord

PASSWORD = "bench-password"
KEY = "bench-key"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FAKE_PIDS: dict[str, int] = {}  # base URL -> pid of the fake serving it

# A prompt containing "chars=N" gets an answer of N characters, others the default length.
FAKE_PROGRAM = """
import asyncio, json, re, sys
from ds2proxy.testing import FakeAccount, FakeDeepSeek, Scripted
opts = json.loads(sys.argv[2])
def script(chars):
    return Scripted(answer="ab" * (chars // 2), chunk_size=opts["chunk_size"], tip=False)
class Fake(FakeDeepSeek):
    async def completion(self, request):
        sized = re.search(r"chars=(\\d+)", str((await self.json_body(request)).get("prompt")))
        if sized:
            self.enqueue(script(int(sized.group(1))))
        return await super().completion(request)
async def main():
    accounts = [FakeAccount(opts["password"], email=e) for e in opts["emails"]]
    extra = {"latency": opts["latency"]} if opts["latency"] else {}
    fake = Fake(accounts, difficulty=opts["difficulty"], default_script=script(opts["answer_chars"]),
                **extra)
    await fake.start(port=int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def emails(count: int) -> list[str]:
    return [f"bench{i}@example.com" for i in range(count)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], ready: str | None = None, env: dict | None = None
          ) -> subprocess.Popen:
    """Start a child; with ``ready``, wait until it prints that word."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    if ready:
        for line in proc.stdout:
            if ready in line:
                break
        else:
            raise RuntimeError(f"{args[:3]} exited before it was ready")
    return proc


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait()


@contextmanager
def fake_upstream(*, accounts: int = 1, answer_chars: int = 40000, chunk_size: int = 2,
                  latency: float = 0.0, difficulty: int = 1000,
                  program: str = FAKE_PROGRAM) -> Iterator[str]:
    """A fake DeepSeek upstream in its own process; yields its base URL."""
    port = free_port()
    opts = {"emails": emails(accounts), "password": PASSWORD, "answer_chars": answer_chars,
            "chunk_size": chunk_size, "latency": latency, "difficulty": difficulty}
    proc = spawn([sys.executable, "-c", program, str(port), json.dumps(opts)], "ready")
    url = f"http://127.0.0.1:{port}"
    FAKE_PIDS[url] = proc.pid
    try:
        yield url
    finally:
        stop(proc)


def proxy_config(base_url: str, *, accounts: int = 1, per_account: int = 4,
                 extra: dict | None = None) -> dict:
    config = {"keys": [KEY],
              "accounts": [{"email": e, "password": PASSWORD} for e in emails(accounts)],
              "upstream": {"base_url": base_url},
              "runtime": {"account_max_inflight": per_account}}
    return deep_merge(config, extra or {})


@contextmanager
def proxy_process(config: dict, *, launcher: list[str] | None = None,
                  env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """``python -m ds2proxy`` on a free port with ``config``; yields (URL, pid).
    ``launcher`` replaces ``-m ds2proxy`` (a script that runs it), ``env``
    adds to the environment."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "DS2PROXY_LOG_LEVEL": "WARNING", **(env or {})}
        proc = subprocess.Popen([sys.executable, *(launcher or ["-m", "ds2proxy"]),
                                 "--config", str(path), "--port", str(port)], env=env, cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            stop(proc)


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (clock-tick resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def chat_body(stream: bool, prompt: str = "bench") -> dict:
    return {"model": "deepseek-chat", "stream": stream,
            "messages": [{"role": "user", "content": prompt}]}


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def sample_record(i: int, key_name: str = "bench") -> RequestRecord:
    """A finished request's record, as a short chat turn leaves it."""
    record = RequestRecord(request_id=f"req_{i}", family="openai", route="/v1/chat/completions",
                           key_name=key_name, model="deepseek-chat", native_model="deepseek-chat",
                           account="bench@example.com", prompt_tokens=100, completion_tokens=50)
    record.finish(200)
    return record
