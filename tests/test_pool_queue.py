"""The wait queue on a live server: a slot freed on one account goes to a
request that can use it, even when the longest-waiting request is pinned
(``X-Ds2-Target-Account``) to another, busy account. (A turn that ends well
wakes every waiter through the health tracker; one whose client leaves
wakes only the oldest, which is where the wake-up got lost.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from conftest import ACCOUNTS, ProxyFactory, running_fake

from ds2proxy.scheduler import TARGET_HEADER
from ds2proxy.testing import FakeDeepSeek
from ds2proxy.testing.clients import Reply
from ds2proxy.testing.clients import post as raw_post

pytestmark = pytest.mark.timeout(60)

ALICE, BOB = (email for email, _ in ACCOUNTS)


class Gated(FakeDeepSeek):
    """Holds each account's completions until its gate opens."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gates = {ALICE: asyncio.Event(), BOB: asyncio.Event()}

    async def completion(self, request: web.Request) -> web.StreamResponse:
        await self.gates[str(self.call_of(request).account)].wait()
        return await super().completion(request)


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeDeepSeek]:
    async for fake in running_fake(Gated):
        yield fake


async def until(condition, what: str) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def test_a_freed_slot_skips_a_waiter_pinned_elsewhere(proxy_factory: ProxyFactory):
    proxy = await proxy_factory({"runtime": {"account_max_inflight": 1,
                                             "queue_timeout_seconds": 30},
                                 "health": {"enabled": False}})
    fake, pool = proxy.fake, proxy.core.pool

    def ask(text: str, target: str | None = None) -> asyncio.Task[Reply]:
        headers = proxy.headers(**({TARGET_HEADER: target} if target else {}))
        body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": text}]}
        return asyncio.create_task(raw_post(proxy.url + "/v1/chat/completions", body, headers))

    on_alice, on_bob = ask("a", ALICE), ask("b", BOB)
    await until(lambda: len(fake.calls_to("chat/completion")) == 2, "both accounts busy")
    for_alice = ask("c", ALICE)
    await until(lambda: pool.waiting == 1, "the pinned request waits")
    anyone = ask("d")
    await until(lambda: pool.waiting == 2, "the unpinned request waits behind it")
    on_bob.cancel()  # its client leaves: bob's lease ends without a verdict on bob
    await until(lambda: pool.inflight == 1, "bob's lease is given back")
    fake.gates[BOB].set()
    reply = await asyncio.wait_for(anyone, 10)  # served on bob, while alice is still busy
    assert reply.status == 200 and "You said: d" in reply.text
    assert not on_alice.done() and not for_alice.done()
    fake.gates[ALICE].set()
    for task in (on_alice, for_alice):
        assert (await asyncio.wait_for(task, 10)).status == 200
    await until(lambda: pool.inflight == 0 and pool.waiting == 0, "the pool is idle")
