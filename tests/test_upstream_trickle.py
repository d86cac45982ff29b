"""An upstream that keeps sending bytes but never ends a line says nothing:
the silence timeout must end the stream (the lease comes back), and a line
past the size cap is refused instead of held in memory without end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import openai
import pytest
from aiohttp import web
from conftest import ProxyFactory, running_fake

from ds2proxy.testing import FakeDeepSeek
from ds2proxy.testing.clients import openai_client

pytestmark = pytest.mark.timeout(60)

START = (b'event: ready\ndata: {"request_message_id":1,"response_message_id":2}\n\n'
         b'data: {"v":{"response":{"message_id":2,"status":"WIP","fragments":'
         b'[{"id":2,"type":"RESPONSE","content":"Hello"}]}}}\n\n')


class Trickling(FakeDeepSeek):
    """Answers "Hello", then sends the start of a line a byte at a time
    (every ``gap`` seconds, ``size`` bytes in all) and never ends it."""

    gap = 0.05
    size = 10 ** 9
    block = 1

    async def completion(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(START + b'data: {"v":"')
        sent = 0
        try:
            while sent < self.size:
                await resp.write(b"x" * self.block)
                sent += self.block
                await asyncio.sleep(self.gap)
        except ConnectionResetError:
            pass
        return resp


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeDeepSeek]:
    async for fake in running_fake(Trickling):
        yield fake


USER = [{"role": "user", "content": "hello"}]


async def read_all(proxy) -> tuple[str, Exception | None]:
    stream = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=USER, stream=True)
    text: list[str] = []
    try:
        async for chunk in stream:
            text += [c.delta.content or "" for c in chunk.choices]
    except openai.APIError as exc:
        return "".join(text), exc
    return "".join(text), None


async def test_bytes_that_never_end_a_line_run_into_the_silence_timeout(
        proxy_factory: ProxyFactory):
    proxy = await proxy_factory({"upstream": {"silence_timeout_seconds": 1}})
    text, error = await asyncio.wait_for(read_all(proxy), 20)
    assert text == "Hello"
    assert error is not None and "sent nothing" in str(error)
    assert proxy.core.pool.inflight == 0


async def test_a_line_past_the_size_cap_ends_the_stream_with_an_error(
        proxy_factory: ProxyFactory):
    """40 MiB without a newline, as fast as the socket takes it: refused at
    32 MiB instead of held (a broken upstream could fill the memory so)."""
    proxy = await proxy_factory({})
    proxy.fake.gap, proxy.fake.block, proxy.fake.size = 0, 1 << 20, 40 << 20
    text, error = await asyncio.wait_for(read_all(proxy), 30)
    assert text == "Hello"
    assert error is not None and "a line over 32 MiB" in str(error)
    assert proxy.core.pool.inflight == 0
