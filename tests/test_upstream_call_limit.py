"""A burst of new turns puts at most CALLS_IN_FLIGHT setup calls (session,
PoW challenge) on the wire at once; the rest queue in the proxy, and every
turn is still answered. Answer streams are not limited by it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from conftest import ProxyFactory, running_fake
from test_upstream_connections import stream_text

from ds2proxy.testing import FakeDeepSeek
from ds2proxy.upstream import client

TURNS = 40
LIMIT = 6


class Timing(FakeDeepSeek):
    """Answers each session and PoW challenge call after a short delay,
    counting how many are in flight at once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self.most_in_flight = 0

    async def _slowly(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                      request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def create_session(self, request: web.Request) -> web.StreamResponse:
        return await self._slowly(super().create_session, request)

    async def create_pow_challenge(self, request: web.Request) -> web.StreamResponse:
        return await self._slowly(super().create_pow_challenge, request)


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeDeepSeek]:
    async for fake in running_fake(Timing):
        yield fake


async def test_setup_calls_in_flight_are_bounded(proxy_factory: ProxyFactory,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "CALLS_IN_FLIGHT", LIMIT)
    proxy = await proxy_factory({"runtime": {"account_max_inflight": 64}})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        bodies = await asyncio.gather(*(stream_text(http, proxy, n) for n in range(TURNS)))
    for n, text in enumerate(bodies):
        assert text.endswith(f"You said: stream {n}")
    fake = proxy.fake
    assert isinstance(fake, Timing)
    assert LIMIT // 2 <= fake.most_in_flight <= LIMIT
