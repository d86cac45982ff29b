"""A real ``redis-server`` for tests and benchmarks (Debian package
``redis-server``; the binary must be on PATH).

:class:`RedisServer` runs one on a free loopback port with its own temporary
folder and no persistence, waits until it answers ``PING``, and can be
stopped and started again on the same port, or frozen (fault tests).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_ping(port: int, timeout: float = 0.2, password: str | None = None) -> bool:
    """True when a Redis on ``port`` answers PING now (after AUTH, given a password)."""
    hello = f"AUTH {password}\r\n".encode() if password else b""
    replies = 2 if password else 1
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(hello + b"PING\r\n")
            reply = b""
            while reply.count(b"\r\n") < replies:
                chunk = sock.recv(64)
                if not chunk:
                    return False
                reply += chunk
            return reply.split(b"\r\n")[replies - 1].startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, port: int | None = None, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.password = password  # requirepass: clients must send it
        self.dir = Path(tempfile.mkdtemp(prefix="ds2proxy-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or start again) and wait until it answers."""
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--protected-mode", "yes",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_ping(self.port, password=self.password):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop at once (SIGKILL: a crash, not a clean shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
