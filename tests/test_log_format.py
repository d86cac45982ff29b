"""``--log-format json`` end to end: the real CLI in demo mode prints one JSON
object per line, a request's end as one object with its fields, no secret."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import aiohttp
import pytest

from ds2proxy.cli import DEMO_KEY

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> None:
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"log ended before {needle!r}: {seen[-5:]}")
        seen.append(line)
        if needle in line:
            return


async def test_json_log_format_from_the_command_line():
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ds2proxy", "--demo", "--log-format", "json", "--port", str(port),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        await asyncio.wait_for(read_until(proc.stderr, "listening on", seen), 30)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={
                    "Authorization": f"Bearer {DEMO_KEY}", "X-Request-Id": "cli-req-1"},
                    json={"model": "deepseek-chat",
                          "messages": [{"role": "user", "content": "hi"}]}) as resp:
                body = await resp.json()
                assert resp.headers["X-Request-Id"] == "cli-req-1"
        await asyncio.wait_for(read_until(proc.stderr, '"event":"request"', seen), 30)
    finally:
        proc.terminate()
        await proc.wait()
    entries = [json.loads(line) for line in seen]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    [request] = [e for e in entries if e.get("event") == "request"]
    assert request["request_id"] == "cli-req-1" and request["status"] == 200
    assert request["prompt_tokens"] == body["usage"]["prompt_tokens"]
    assert request["completion_tokens"] == body["usage"]["completion_tokens"]
    assert request["key_name"] and request["account"] == "demo@example.com"
    assert "key_name=" in request["message"] and "cli-req-1" in request["message"]
    # Only the demo banner names the (public) demo key, on purpose.
    assert not [line for line in seen if DEMO_KEY in line and "demo mode" not in line]
