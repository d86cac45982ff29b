"""``--log-format json`` end to end: the real CLI in demo mode prints one JSON
object per line, a request's end as one object with its fields, no secret.
The text format keeps one record per line whatever a client sends, and masks
credentials from any logger, as JSON does."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import sys
from collections.abc import Mapping

import aiohttp
import pytest

from ds2proxy import logfmt
from ds2proxy.cli import DEMO_KEY

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def demo_cli(*flags: str) -> tuple[int, asyncio.subprocess.Process]:
    """The real CLI in demo mode on a free port, its log on a pipe."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ds2proxy", "--demo", *flags, "--port", str(port),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    return port, proc


async def demo_chat(http: aiohttp.ClientSession, port: int, request_id: str, model: str
                    ) -> tuple[int, dict, Mapping[str, str]]:
    """One chat turn through the demo CLI: (status, JSON body, headers)."""
    async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={
            "Authorization": f"Bearer {DEMO_KEY}", "X-Request-Id": request_id},
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as resp:
        return resp.status, await resp.json(), resp.headers.copy()  # names case-blind


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> None:
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"log ended before {needle!r}: {seen[-5:]}")
        seen.append(line)
        if needle in line:
            return


async def test_json_log_format_from_the_command_line():
    port, proc = await demo_cli("--log-format", "json")
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        await asyncio.wait_for(read_until(proc.stderr, "listening on", seen), 30)
        async with aiohttp.ClientSession() as http:
            status, body, headers = await demo_chat(http, port, "cli-req-1", "deepseek-chat")
        assert status == 200 and headers["X-Request-Id"] == "cli-req-1"
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


async def test_text_log_lines_cannot_be_forged_by_a_model_name_or_path():
    port, proc = await demo_cli()
    seen: list[str] = []
    forged = "2026-01-01 00:00:00,000 ERROR ds2proxy: FORGED"
    try:
        assert proc.stderr is not None
        await asyncio.wait_for(read_until(proc.stderr, "listening on", seen), 30)
        async with aiohttp.ClientSession() as http:
            status, _, _ = await demo_chat(http, port, "forge-1",
                                           f"deepseek-chat\n{forged}\u2028\x1b[2J")
            assert status == 400
            async with http.post(
                    f"http://127.0.0.1:{port}/v1beta/models/x%0A{forged}:generateContent",
                    headers={"x-goog-api-key": DEMO_KEY, "X-Request-Id": "forge-2"},
                    json={"contents": [{"parts": [{"text": "hi"}]}]}) as resp:
                assert resp.status == 404
        await asyncio.wait_for(read_until(proc.stderr, "id=forge-2", seen), 30)
    finally:
        proc.terminate()
        await proc.wait()
    assert not [line for line in seen if line.startswith("2026-01-01")]
    [line] = [line for line in seen if "id=forge-1" in line]
    assert "model=deepseek-chat\\n2026-01-01" in line and "\\u2028\\x1b[2J" in line


def test_text_format_masks_credentials_whichever_logger_writes_them(root_logging):
    out = io.StringIO()
    logfmt.configure("text", "INFO", stream=out)
    logging.getLogger("some_plugin").warning("sent Authorization: Bearer sk-live-0123456789")
    try:
        raise ValueError("api_key=sk-live-9876543210")
    except ValueError:
        logging.getLogger("asyncio").exception("task failed")
    text = out.getvalue()
    assert "sk-live" not in text
    assert "Authorization: [redacted]" in text and "ValueError: api_key=[redacted]" in text
    assert "Traceback (most recent call last)" in text  # tracebacks keep their lines


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
