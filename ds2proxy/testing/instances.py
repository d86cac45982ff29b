"""Several real ds2proxy processes (``python -m ds2proxy``) sharing one
config, on free loopback ports, started and awaited until ``/readyz`` says
ready. Used by the multi-instance tests and ``bench/redis_bench.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .redis_server import free_port

READY_TIMEOUT = 30.0


@dataclass
class Instance:
    """One ds2proxy process: its URL and its process handle."""

    port: int
    proc: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """``kill -9``: no cleanup runs, held leases are left behind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Instances:
    """Start with :meth:`start`; every process is stopped by :meth:`close`."""

    folder: Path
    config: dict[str, Any]
    admin_key: str = "instances-admin-key"
    running: list[Instance] = field(default_factory=list)

    async def start(self, count: int = 1) -> list[Instance]:
        started = [self._spawn(len(self.running) + i) for i in range(count)]
        self.running.extend(started)
        await asyncio.gather(*(wait_ready(inst) for inst in started))
        return started

    async def restart(self, index: int = 0) -> Instance:
        """Stop instance ``index`` (SIGTERM, its clean shutdown) and start it
        again on the same config file, so on the same state file."""
        self.running[index].stop()
        inst = self._spawn(index, rewrite=False)
        self.running[index] = inst
        await wait_ready(inst)
        return inst

    def _spawn(self, index: int, *, rewrite: bool = True) -> Instance:
        path = self.folder / f"instance-{index}.json"
        if rewrite:
            path.write_text(json.dumps(self.config))
        port = free_port()
        log_path = self.folder / f"instance-{index}.log"
        env = {**os.environ, "DS2PROXY_ADMIN_KEY": self.admin_key}
        env.pop("DS2PROXY_CONFIG_JSON", None)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ds2proxy", "--config", str(path), "--port", str(port)],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        return Instance(port, proc, log_path)

    def close(self) -> None:
        for inst in self.running:
            inst.stop()
        self.running.clear()


async def wait_ready(inst: Instance, timeout: float = READY_TIMEOUT) -> None:
    """Until ``/readyz`` answers 200 (fails early if the process exits)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if inst.proc.poll() is not None:
                raise RuntimeError(f"ds2proxy on port {inst.port} exited:\n{inst.log()}")
            if await readyz(http, inst.url) == 200:
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"ds2proxy on port {inst.port} not ready in {timeout} s:\n{inst.log()}")


async def readyz(http: aiohttp.ClientSession, url: str) -> int:
    """The status ``/readyz`` answers now (0 when nothing answers)."""
    try:
        async with http.get(url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return 0
