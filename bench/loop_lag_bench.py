"""Event-loop lag while one heavy but valid request runs.

The proxy runs in this process, on a loop watched by a probe (a task that
sleeps 1 ms and records how late it wakes); each request is sent from a
client thread with a loop of its own, so the client's work never shows as
the proxy's lag. The fake upstream runs in its own process. For each
operation the script prints its time per call and the loop's lag while it
ran: p50, p99 and max, in milliseconds. A loop that never blocks keeps the
max near a few ms whatever the operation.

    python bench/loop_lag_bench.py [--accounts 4000] [--repeat 5] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import auth, fake_upstream, percentile, proxy_config  # noqa: E402

from ds2proxy.app import create_app, start_server  # noqa: E402
from ds2proxy.config_store import ConfigStore  # noqa: E402

ADMIN_KEY = "bench-admin-key"
TICK = 0.001


class LagProbe:
    """How late a 1 ms sleep wakes, recorded while ``recording`` is set."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.recording = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            if self.recording:
                self.samples.append(max(0.0, time.perf_counter() - before - TICK))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class ClientThread:
    """An aiohttp client on a loop of its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.http = self.run(self._session())

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=600))

    def run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def call(self, coro: Awaitable[Any]) -> Any:
        """Await ``coro`` on the client's loop without blocking the caller's."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def close(self) -> None:
        await self.call(self.http.close())
        self.loop.call_soon_threadsafe(self.loop.stop)


async def fetch(http: aiohttp.ClientSession, method: str, url: str, *, body: bytes | None = None,
                headers: dict[str, str] | None = None, form: dict | None = None,
                expect: int = 200) -> bytes:
    sent = {**(headers or {})}
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    async with http.request(method, url, data=form if form is not None else body,
                            headers=sent, allow_redirects=False) as resp:
        raw = await resp.read()
        if resp.status != expect:
            raise RuntimeError(f"{method} {url} answered {resp.status}: {raw[:300]!r}")
        return raw


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


async def dashboard_login(http: aiohttp.ClientSession, url: str) -> None:
    page = (await fetch(http, "GET", url + "/admin/ui/login")).decode()
    token = re.search(r'name="login_token" value="([^"]+)"', page).group(1)
    await fetch(http, "POST", url + "/admin/ui/login", expect=303, form={
        "login_token": token, "admin_key": ADMIN_KEY, "next": "/admin/"})


def chat(messages: list[dict], **extra: Any) -> bytes:
    return json.dumps({"model": "deepseek-chat", "messages": messages, **extra}).encode()


def big_conversation(megabytes: float) -> bytes:
    """An agent's session: tool calls and file-sized tool results."""
    messages: list[dict] = [{"role": "system", "content": "You are a coding agent."}]
    chunk = "def handler(request):\n    return respond(request)  # keep\n" * 170
    for i in range(int(megabytes * 1e6 / len(chunk))):
        messages.append({"role": "assistant", "content": "", "tool_calls": [{
            "id": f"call_{i}", "type": "function",
            "function": {"name": "read_file", "arguments": json.dumps({"path": f"src/f{i}.py"})}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": chunk})
    messages.append({"role": "user", "content": "Now fix the bug."})
    return chat(messages)


def many_messages(count: int) -> bytes:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} ok"}
                for i in range(count)]
    return chat(messages + [{"role": "user", "content": "sum it up"}])


def huge_tools(count: int) -> bytes:
    props = {f"field_{j}": {"type": "string", "description": "a field " * 20} for j in range(40)}
    tools = [{"type": "function", "function": {
        "name": f"tool_{i}", "description": "does a thing " * 30,
        "parameters": {"type": "object", "properties": props, "required": ["field_0"]}}}
        for i in range(count)]
    return chat([{"role": "user", "content": "hi"}], tools=tools)


def big_image(megabytes: float) -> bytes:
    data = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * int(megabytes * 1e6)).decode()
    return chat([{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}]}])


def image_b64(megabytes: float) -> str:
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * int(megabytes * 1e6)).decode()


def ollama_image(megabytes: float) -> bytes:
    return json.dumps({"model": "deepseek-chat", "stream": False, "messages": [
        {"role": "user", "content": "what is this", "images": [image_b64(megabytes)]}]}).encode()


def gemini_image(megabytes: float) -> bytes:
    return json.dumps({"contents": [{"parts": [
        {"inlineData": {"mimeType": "image/png", "data": image_b64(megabytes)}},
        {"text": "what is this"}]}]}).encode()


def many_embeddings(encoding: str) -> bytes:
    return json.dumps({"model": "text-embedding-3-small", "dimensions": 8192,
                       "encoding_format": encoding,
                       "input": [f"text number {i}" for i in range(2048)]}).encode()


class Bench:
    def __init__(self, url: str, client: ClientThread, probe: LagProbe, accounts: int) -> None:
        self.url, self.client, self.probe, self.accounts = url, client, probe, accounts
        self.added = 0

    async def measure(self, name: str, repeat: int, op: Callable[[], Awaitable[Any]]) -> None:
        await asyncio.sleep(0.05)  # the previous operation's tail is not this one's lag
        self.probe.samples.clear()
        self.probe.recording = True
        start = time.perf_counter()
        for _ in range(repeat):
            await self.client.call(op())
        per_call = (time.perf_counter() - start) / repeat
        self.probe.recording = False
        lag = [s * 1000 for s in self.probe.samples] or [0.0]
        print(f"{name:34} {per_call * 1000:9.1f} ms/call   lag p50 {percentile(lag, 50):6.2f}"
              f"  p99 {percentile(lag, 99):7.2f}  max {max(lag):7.2f} ms", flush=True)

    def get(self, path: str, admin: bool = True) -> Callable[[], Awaitable[bytes]]:
        return lambda: fetch(self.client.http, "GET", self.url + path,
                             headers=admin_headers() if admin else None)

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
             ) -> Callable[[], Awaitable[bytes]]:
        return lambda: fetch(self.client.http, method, self.url + path, body=body,
                             headers=headers or admin_headers())

    def big_form(self) -> Callable[[], Awaitable[bytes]]:
        """A dashboard form near the admin body cap: 900 fields of escaped text."""
        async def post() -> bytes:
            home = (await fetch(self.client.http, "GET", self.url + "/admin/")).decode()
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', home).group(1)
            fields = "&".join(f"pad{i}=" + "%C3%A9+x" * 800 for i in range(900))
            return await fetch(self.client.http, "POST", self.url + "/admin/ui/captures/clear",
                               expect=303, body=f"csrf_token={csrf}&{fields}".encode(),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        return post

    def add_account(self) -> Awaitable[bytes]:
        self.added += 1
        body = json.dumps({"email": f"added{self.added}@example.com", "password": "pw"}).encode()
        return fetch(self.client.http, "POST", self.url + "/admin/accounts", body=body,
                     headers=admin_headers())

    async def operations(self) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        export = await self.client.call(self.get("/admin/config/export")())
        doc = json.loads(export)["config"]
        settings = json.dumps({"runtime": {"queue_timeout_seconds": 121}}).encode()
        api = auth()
        return [
            ("admin GET /admin/config", self.get("/admin/config")),
            ("admin GET /admin/accounts", self.get("/admin/accounts?page=1&page_size=100")),
            ("admin GET /admin/config/export", self.get("/admin/config/export")),
            ("admin GET /admin/overview", self.get("/admin/overview")),
            ("admin PUT /admin/settings", self.send("PUT", "/admin/settings", settings)),
            ("admin POST /admin/accounts", self.add_account),
            ("admin POST /admin/config/import", self.send(
                "POST", "/admin/config/import?mode=merge", json.dumps(doc).encode())),
            ("page form 7 MB (900 fields)", self.big_form()),
            ("admin POST /admin/config (lists)", self.send(
                "POST", "/admin/config", json.dumps({"accounts": doc["accounts"]}).encode())),
            ("page /admin/ (overview)", self.get("/admin/", admin=False)),
            ("page /admin/ui/accounts", self.get("/admin/ui/accounts", admin=False)),
            ("page /admin/ui/config", self.get("/admin/ui/config", admin=False)),
            ("page /admin/ui/settings", self.get("/admin/ui/settings", admin=False)),
            ("page /admin/ui/usage", self.get("/admin/ui/usage", admin=False)),
            ("admin GET /admin/usage/requests", self.get("/admin/usage/requests?limit=200")),
            ("GET /metrics", self.get("/metrics")),
            ("chat 4 MB agent conversation", self.send(
                "POST", "/v1/chat/completions", big_conversation(4), api)),
            ("chat 10k messages", self.send(
                "POST", "/v1/chat/completions", many_messages(10_000), api)),
            ("chat 300 tools (3 MB schemas)", self.send(
                "POST", "/v1/chat/completions", huge_tools(300), api)),
            ("chat 8 MB base64 image", self.send(
                "POST", "/v1/chat/completions", big_image(8), api)),
            ("ollama chat 8 MB base64 image", self.send(
                "POST", "/api/chat", ollama_image(8), api)),
            ("gemini countTokens 8 MB image", self.send(
                "POST", "/v1beta/models/gemini-2.5-flash:countTokens", gemini_image(8), api)),
            ("embeddings 2048 x 8192 float", self.send(
                "POST", "/v1/embeddings", many_embeddings("float"), api)),
            ("embeddings 2048 x 8192 base64", self.send(
                "POST", "/v1/embeddings", many_embeddings("base64"), api)),
            ("ollama embed 2048 x 8192", self.send(
                "POST", "/api/embed", json.dumps({
                    "model": "deepseek-chat", "input": [f"text {i}" for i in range(2048)],
                    "dimensions": 8192}).encode(), api)),
        ]


async def main(args: argparse.Namespace) -> None:
    with fake_upstream(accounts=args.accounts, answer_chars=200, chunk_size=50) as base_url, \
            tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        config = proxy_config(base_url, accounts=args.accounts, extra={
            "history_file": {"enabled": args.history_file},
            "embeddings": {"provider": "testing"}})
        path.write_text(json.dumps(config))
        app = create_app(ConfigStore.from_sources(str(path), {}), admin_key=ADMIN_KEY)
        server = await start_server(app)
        probe, client = LagProbe(), ClientThread()
        probe.start()
        try:
            await client.call(dashboard_login(client.http, server.url))
            bench = Bench(server.url, client, probe, args.accounts)
            print(f"{args.accounts} accounts; {args.repeat} calls each")
            for name, op in await bench.operations():
                if not args.only or any(word in name for word in args.only):
                    await bench.measure(name, args.repeat, op)
        finally:
            probe.stop()
            await client.close()
            await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--history-file", action="store_true",
                        help="send long conversations as a history file")
    parser.add_argument("--only", nargs="*", help="run operations whose name holds a word")
    asyncio.run(main(parser.parse_args()))
