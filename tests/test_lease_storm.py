"""Fifty requests of five families at once, among upstream faults (5xx, 429,
drops, resets, silence, INCOMPLETE answers, error envelopes, empty answers)
and clients that leave at random moments: afterwards the pool is exactly
idle (its queue too) and every request the server took is recorded once."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import pytest

from admin_util import wait_until
from conftest import ProxyFactory
from ds2proxy.testing import Delivery, EnvelopeFault, HttpFault, Scripted

pytestmark = pytest.mark.timeout(120)

SCRIPTS = [
    Scripted(answer="hello " * 20),
    Scripted(answer="x" * 200, chunk_size=2, delivery=Delivery(chunk_delay=0.01)),
    HttpFault(500), HttpFault(429),
    Scripted(answer="y" * 100, chunk_size=2, delivery=Delivery(drop_after=10)),
    Scripted(answer="y" * 100, chunk_size=2, delivery=Delivery(drop_after=10, abort=True)),
    Scripted(answer="z" * 10, delivery=Delivery(chunk_delay=2)),  # silent past the timeout
    Scripted(answer="w" * 60, incomplete_after=5),
    EnvelopeFault(),
    Scripted(answer="", thinking="nothing visible"),
]

USER = [{"role": "user", "content": "hi"}]
ROUTES: list[tuple[str, Any]] = [
    ("/v1/chat/completions", lambda stream: {"model": "deepseek-chat", "stream": stream,
                                             "messages": USER}),
    ("/v1/responses", lambda stream: {"model": "deepseek-chat", "stream": stream,
                                      "input": "hi"}),
    ("/anthropic/v1/messages", lambda stream: {"model": "claude-sonnet-4-5", "max_tokens": 50,
                                               "stream": stream, "messages": USER}),
    ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
     lambda stream: {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
    ("/api/chat", lambda stream: {"model": "deepseek-chat", "stream": stream,
                                  "messages": USER}),
]


async def test_fifty_requests_with_faults_and_departures_leave_the_pool_idle(
        proxy_factory: ProxyFactory):
    proxy = await proxy_factory({
        "runtime": {"account_max_inflight": 3, "account_max_queue": 100},
        "upstream": {"silence_timeout_seconds": 1}, "health": {"enabled": False}})
    rnd = random.Random(7)
    proxy.fake.enqueue(*(rnd.choice(SCRIPTS) for _ in range(80)))

    async def one(http: aiohttp.ClientSession) -> None:
        route, body = rnd.choice(ROUTES)
        leave_after = rnd.choice([None, None, 0.3, 0.6, 1.0, 2.0])
        call = http.post(proxy.url + route, headers=proxy.headers(), json=body(rnd.random() < 0.7))

        async def read() -> None:
            async with call as resp:
                await resp.read()
        try:
            await asyncio.wait_for(read(), leave_after)
        except (TimeoutError, aiohttp.ClientError):
            pass  # the client left, or the server ended a broken stream

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(one(http) for _ in range(50)))
    core = proxy.core
    await wait_until(lambda: core.monitor.inflight == 0, timeout=30)
    await wait_until(lambda: core.pool.inflight == 0)
    assert core.pool.waiting == 0
    assert [a.inflight for a in core.pool.accounts()] == [0, 0]
    assert core.usage.recorded == core.monitor.requests_total >= 40
