"""A burst of new turns puts at most CALLS_IN_FLIGHT setup calls (session,
PoW challenge) on the wire at once per route; the rest queue in the proxy,
and every turn is still answered. Answer streams are not limited by it, and
a route whose calls hang (an account's proxy) does not hold up the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from conftest import ACCOUNTS, ProxyFactory, running_fake
from proxy_servers import http_proxy  # noqa: F401  (fixture)
from test_upstream_connections import stream_text, until

from ds2proxy.testing import FakeDeepSeek
from ds2proxy.testing.clients import openai_client
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
        self.held = ""  # an account whose calls wait for ``release``
        self.release = asyncio.Event()

    async def _slowly(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                      request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            if self.held and self.call_of(request).account == self.held:
                await self.release.wait()
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


async def ask(proxy, account: str) -> str:
    client = openai_client(proxy, default_headers={"X-Ds2-Target-Account": account})
    reply = await client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": f"hello {account}"}])
    return reply.choices[0].message.content or ""


async def test_a_held_route_does_not_hold_up_another(proxy_factory: ProxyFactory,
                                                     http_proxy: str,  # noqa: F811
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "CALLS_IN_FLIGHT", 1)
    (direct, direct_pw), (proxied, proxied_pw) = ACCOUNTS[:2]
    proxy = await proxy_factory({"accounts": [
        {"email": direct, "password": direct_pw},
        {"email": proxied, "password": proxied_pw, "proxy": http_proxy}]})
    fake = proxy.fake
    assert isinstance(fake, Timing)
    fake.held = direct
    held = asyncio.create_task(ask(proxy, direct))
    try:
        await until(lambda: fake.in_flight >= 1, "the direct account's setup call is held")
        answer = await asyncio.wait_for(ask(proxy, proxied), 20)
        assert answer.endswith(f"You said: hello {proxied}")
        assert not held.done()
    finally:
        fake.release.set()
    assert (await held).endswith(f"You said: hello {direct}")
