"""No hidden cap on upstream connections: as many streams as the account pool
admits are open at the upstream at once (aiohttp's default connector would
hold all but 100 back, silently); idle ones beyond ``keepalive_connections``
are closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from conftest import Proxy, ProxyFactory, running_fake

from ds2proxy.testing import FakeDeepSeek

STREAMS = 120


class Gathering(FakeDeepSeek):
    """Holds every completion until ``STREAMS`` of them are open at once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.open_streams = 0
        self.all_open = asyncio.Event()

    async def completion(self, request: web.Request) -> web.StreamResponse:
        self.open_streams += 1
        if self.open_streams >= STREAMS:
            self.all_open.set()
        await asyncio.wait_for(self.all_open.wait(), 30)
        return await super().completion(request)


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeDeepSeek]:
    async for fake in running_fake(Gathering):
        yield fake


async def stream_text(http: aiohttp.ClientSession, proxy: Proxy, n: int) -> str:
    body = {"model": "deepseek-chat", "stream": True,
            "messages": [{"role": "user", "content": f"stream {n}"}]}
    async with http.post(proxy.url + "/v1/chat/completions", json=body,
                         headers=proxy.headers()) as resp:
        assert resp.status == 200
        text = []
        async for line in resp.content:
            if line.startswith(b"data: {"):
                delta = json.loads(line[6:])["choices"][0]["delta"]
                text.append(delta.get("content") or "")
        return "".join(text)


async def test_more_than_a_hundred_streams_reach_the_upstream_at_once(
        proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory({"runtime": {"account_max_inflight": 64}})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        bodies = await asyncio.gather(*(stream_text(http, proxy, n) for n in range(STREAMS)))
    assert proxy.fake.all_open.is_set()
    for n, text in enumerate(bodies):
        assert text.endswith(f"You said: stream {n}")


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (on the loop, polling) until ``condition()`` holds, at most 10 s."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def test_idle_connections_beyond_the_keepalive_cap_are_closed(
        proxy_factory: ProxyFactory) -> None:
    """A burst opens a connection per stream; once it is over only
    ``keepalive_connections`` stay open for reuse, and are reused."""
    proxy = await proxy_factory({"runtime": {"account_max_inflight": 64},
                                 "upstream": {"keepalive_connections": 5}})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(stream_text(http, proxy, n) for n in range(STREAMS)))
        await until(lambda: proxy.fake.open_connections() <= 5, "idle connections closed")
        assert proxy.fake.open_connections() > 0  # some were kept
        kept = proxy.fake.open_connections()
        proxy.fake.all_open.set()  # later completions need not wait for a crowd
        before = len(proxy.fake.calls)
        for n in range(3):
            assert (await stream_text(http, proxy, n)).endswith(f"You said: stream {n}")
        assert len(proxy.fake.calls) - before >= 9  # session, challenge, completion each
        assert proxy.fake.open_connections() <= max(kept, 2)


async def test_a_keepalive_cap_of_zero_keeps_no_idle_connection_and_applies_live(
        proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory({"runtime": {"account_max_inflight": 64}})
    proxy.fake.all_open.set()
    async with aiohttp.ClientSession() as http:
        await stream_text(http, proxy, 0)
        assert proxy.fake.open_connections() > 0  # the default keeps them
        async with http.put(proxy.url + "/admin/settings", headers={
                "Authorization": f"Bearer {proxy.admin_key}"},
                json={"upstream": {"keepalive_connections": 0}}) as resp:
            assert resp.status == 200, await resp.text()
        await stream_text(http, proxy, 1)
        await until(lambda: proxy.fake.open_connections() == 0, "no idle connection kept")

