"""Real proxy servers on loopback for the per-account proxy tests:
tinyproxy (HTTP, with basic auth) and Dante (SOCKS5), both Debian packages
that .ci/run installs. Each proxy connects out from its own loopback
address, so the fake upstream can tell which route a call took."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

HTTP_PROXY_EXIT = "127.0.0.3"
SOCKS_PROXY_EXIT = "127.0.0.2"
HTTP_PROXY_USER, HTTP_PROXY_PASSWORD = "proxy-user", "proxy-secret-pw"
TINYPROXY = shutil.which("tinyproxy")
DANTED = shutil.which("danted") or ("/usr/sbin/danted" if os.path.exists("/usr/sbin/danted")
                                    else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tinyproxy_conf(port: int) -> str:
    lines = [f"Port {port}", "Listen 127.0.0.1", f"Bind {HTTP_PROXY_EXIT}", "Timeout 60",
             "MaxClients 50", "Allow 127.0.0.1",
             f"BasicAuth {HTTP_PROXY_USER} {HTTP_PROXY_PASSWORD}"]
    if os.geteuid() == 0:
        lines += ["User nobody", "Group nogroup"]
    return "\n".join(lines) + "\n"


def dante_conf(port: int) -> str:
    user = "user.privileged: root\nuser.unprivileged: nobody\n" if os.geteuid() == 0 else ""
    return (f"logoutput: stderr\ninternal: 127.0.0.1 port = {port}\n"
            f"external: {SOCKS_PROXY_EXIT}\nclientmethod: none\nsocksmethod: none\n{user}"
            "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
            "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n")


async def wait_for_port(port: int, proc: asyncio.subprocess.Process, timeout: float = 10
                        ) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if proc.returncode is not None:
            raise AssertionError(f"proxy exited with {proc.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"proxy did not listen on {port} in time") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


@asynccontextmanager
async def running(argv: list[str], port: int) -> AsyncIterator[None]:
    """Run a proxy in its own process group; stop exactly that group after."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True)
    try:
        await wait_for_port(port, proc)
        yield
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


@pytest.fixture
async def http_proxy(tmp_path: Path) -> AsyncIterator[str]:
    """``http://user:pass@127.0.0.1:port`` of a running tinyproxy."""
    if TINYPROXY is None:
        pytest.fail("tinyproxy is not installed (.ci/run installs it)")
    port = free_port()
    conf = tmp_path / "tinyproxy.conf"
    conf.write_text(tinyproxy_conf(port))
    async with running([TINYPROXY, "-d", "-c", str(conf)], port):
        yield f"http://{HTTP_PROXY_USER}:{HTTP_PROXY_PASSWORD}@127.0.0.1:{port}"


@pytest.fixture
async def socks_proxy(tmp_path: Path) -> AsyncIterator[str]:
    """``socks5://127.0.0.1:port`` of a running Dante server."""
    if DANTED is None:
        pytest.fail("dante-server is not installed (.ci/run installs it)")
    port = free_port()
    conf = tmp_path / "danted.conf"
    conf.write_text(dante_conf(port))
    async with running([DANTED, "-f", str(conf), "-N", "1"], port):
        yield f"socks5://127.0.0.1:{port}"
