"""A client that hangs up at every point of a turn: while queued for an
account, during the PoW, before the first upstream byte, during a fail-over,
mid-stream, during a continue round, while a tool call is buffered. Whatever
the point, the lease comes back, the upstream stream is closed and the
request is recorded once, as a 499."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from admin_util import admin_for, wait_until
from conftest import TEST_KEY, Proxy, ProxyFactory
from dsml_util import dsml
from ds2proxy.keyring import identity_of
from ds2proxy.testing import Delivery, Scripted
from ds2proxy.testing.clients import post as raw_post

pytestmark = pytest.mark.timeout(120)

CHAT = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}
SLOW = Delivery(chunk_delay=0.05)
QUIET = Delivery(silence=60, comment_every=0.05)
TOOLS = [{"type": "function", "function": {
    "name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]


def streaming(proxy: Proxy) -> int:
    """Completion and continue streams the fake is serving right now."""
    return sum(proxy.fake.streaming.values())


async def rows(proxy: Proxy) -> list[dict]:
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        return (await admin.ok("GET", "/admin/usage/requests?per_page=500"))["requests"]


class Client:
    """One request on its own connection, left at the moment the test chooses."""

    def __init__(self, proxy: Proxy, body: dict) -> None:
        self.http = aiohttp.ClientSession()
        self.task = asyncio.ensure_future(self.http.post(
            proxy.url + "/v1/chat/completions", json=body, headers=proxy.headers()))

    async def first_line(self) -> bytes:
        resp = await self.task
        assert resp.status == 200
        while (line := await resp.content.readline()).strip() in (b"", b":"):
            pass
        return line

    async def leave(self) -> None:
        self.task.cancel()
        if self.task.done() and not self.task.cancelled():
            self.task.result().close()
        await self.http.close()


async def settled(proxy: Proxy, recorded: int) -> None:
    await wait_until(lambda: proxy.core.usage.recorded == recorded)
    await wait_until(lambda: proxy.core.pool.inflight == 0 and streaming(proxy) == 0)


async def at_pow(proxy: Proxy, body: dict) -> None:
    proxy.fake.pow.difficulty = 1 << 40  # never solved: the client leaves first
    asked = len(proxy.fake.calls_to("chat/create_pow_challenge"))
    client = Client(proxy, body)
    await wait_until(lambda: len(proxy.fake.calls_to("chat/create_pow_challenge")) > asked)
    await client.leave()
    await wait_until(lambda: proxy.core.pool.inflight == 0)
    proxy.fake.pow.difficulty = 1000


async def before_first_byte(proxy: Proxy, body: dict) -> None:
    proxy.fake.enqueue(Scripted(answer="late", delivery=QUIET))
    client = Client(proxy, body)
    await wait_until(lambda: streaming(proxy) == 1)
    await client.leave()


async def during_fail_over(proxy: Proxy, body: dict) -> None:
    # The first account's stream breaks before any output; the client leaves
    # while the turn waits on the second one.
    proxy.fake.enqueue(Scripted(answer="never", delivery=Delivery(drop_after=0)),
                       Scripted(answer="late", delivery=QUIET))
    client = Client(proxy, body)
    await wait_until(lambda: len(proxy.fake.calls_to("chat/completion")) == 2
                     and streaming(proxy) == 1)
    await client.leave()


async def mid_stream(proxy: Proxy, body: dict) -> None:
    proxy.fake.enqueue(Scripted(thinking="hmm " * 50, answer="word " * 200, chunk_size=4,
                                delivery=SLOW))
    client = Client(proxy, {**body, "model": "deepseek-reasoner"})
    if body.get("stream"):
        await client.first_line()
    else:
        await wait_until(lambda: streaming(proxy) == 1)
    await client.leave()


async def in_continue_round(proxy: Proxy, body: dict) -> None:
    proxy.fake.enqueue(Scripted(answer="word " * 100, chunk_size=4, incomplete_after=5,
                                delivery=SLOW))
    continued = len(proxy.fake.calls_to("chat/continue"))
    client = Client(proxy, body)
    await wait_until(lambda: len(proxy.fake.calls_to("chat/continue")) > continued)
    await client.leave()


async def in_tool_call(proxy: Proxy, body: dict) -> None:
    call = dsml(("lookup", {"q": "x" * 300}))
    proxy.fake.enqueue(Scripted(answer="Looking.\n\n" + call, chunk_size=3, delivery=SLOW))
    client = Client(proxy, {**body, "tools": TOOLS})
    if body.get("stream"):
        await client.first_line()
    await wait_until(lambda: streaming(proxy) == 1)
    await client.leave()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("point", [at_pow, before_first_byte, during_fail_over, mid_stream,
                                   in_continue_round, in_tool_call], ids=lambda f: f.__name__)
async def test_a_client_leaving_at_any_point_frees_everything_once(proxy_factory: ProxyFactory,
                                                                   point, stream: bool):
    # The key's one concurrent slot and its token reservation come back too.
    proxy = await proxy_factory({"health": {"enabled": False}, "keys": [{
        "name": "k", "key": TEST_KEY, "limits": {"concurrent": 1, "tokens_per_day": 10**6}}]})
    ref = identity_of(TEST_KEY)
    recorded = proxy.core.usage.recorded
    await point(proxy, {**CHAT, "stream": stream})
    await settled(proxy, recorded + 1)
    [row] = await rows(proxy)
    assert row["status"] == 499, row
    assert (proxy.core.limiter.active(ref), proxy.core.limiter.reserved(ref)) == (0, 0)
    # The pool serves the next request, and the one that left stays one row.
    reply = await raw_post(proxy.url + "/v1/chat/completions", {**CHAT, "stream": stream},
                           proxy.headers())
    assert reply.status == 200
    await settled(proxy, recorded + 2)
    assert [r["status"] for r in await rows(proxy)] == [200, 499]


async def test_a_queued_client_leaving_gives_its_place_to_the_next(proxy_factory: ProxyFactory):
    proxy = await proxy_factory({"health": {"enabled": False},
                                 "runtime": {"account_max_inflight": 1}})
    recorded = proxy.core.usage.recorded
    proxy.fake.enqueue(*[Scripted(answer="held", delivery=QUIET)] * 2)
    holders = [Client(proxy, {**CHAT, "stream": True}) for _ in range(2)]
    await wait_until(lambda: streaming(proxy) == 2)
    leaving = Client(proxy, {**CHAT, "stream": True})
    await wait_until(lambda: proxy.core.pool.waiting == 1)
    staying = Client(proxy, {**CHAT, "stream": True})
    await wait_until(lambda: proxy.core.pool.waiting == 2)
    await leaving.leave()
    await wait_until(lambda: proxy.core.pool.waiting == 1)
    await wait_until(lambda: proxy.core.usage.recorded == recorded + 1)
    await holders[0].leave()
    resp = await staying.task
    assert resp.status == 200
    assert "[DONE]" in (await resp.text())
    await staying.leave()
    await holders[1].leave()
    await settled(proxy, recorded + 4)
    assert sorted(r["status"] for r in await rows(proxy)) == [200, 499, 499, 499]
    assert len(proxy.fake.calls_to("chat/completion")) == 3
