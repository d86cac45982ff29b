"""No hidden cap on upstream connections: as many streams as the account pool
admits are open at the upstream at once (aiohttp's default connector would
hold all but 100 back, silently)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

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
