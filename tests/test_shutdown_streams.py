"""A shutdown with streams in flight: streams shorter than the grace period
finish, longer ones end with the family's in-band error (never a cut
connection), leases come back and every request is recorded once, with the
usage of what was sent, before the store closes."""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import openai
import pytest

from admin_util import wait_until
from conftest import Proxy, ProxyFactory
from ds2proxy.app import STREAM_GRACE_SECONDS, create_app, start_server
from ds2proxy.config_store import ConfigStore
from ds2proxy.testing import Delivery, Scripted
from ds2proxy.testing.clients import anthropic_client, openai_client

pytestmark = pytest.mark.timeout(60)

LONG = Scripted(answer="word " * 2000, chunk_size=5, delivery=Delivery(chunk_delay=0.02))
SHORT = Scripted(answer="done " * 20, chunk_size=5, delivery=Delivery(chunk_delay=0.02))


async def restarted(proxy: Proxy, stream_grace: float = STREAM_GRACE_SECONDS) -> Proxy:
    """``proxy``'s config (and saved state) served again, by a server with
    ``stream_grace``."""
    await proxy.server.close()
    store = ConfigStore.from_sources(str(proxy.config_path), {})
    server = await start_server(create_app(store, admin_key=proxy.admin_key),
                                stream_grace=stream_grace)
    return type(proxy)(server.url, proxy.key, proxy.admin_key, proxy.fake, server.runner.app,
                       store, proxy.config_path, server)


async def test_streams_past_the_grace_end_in_band_and_are_recorded(proxy: Proxy):
    served = await restarted(proxy, stream_grace=3.0)
    served.fake.enqueue(LONG, LONG, SHORT)
    chat = await openai_client(served).chat.completions.create(
        model="deepseek-chat", stream=True, messages=[{"role": "user", "content": "a"}])
    claude = await anthropic_client(served, "/anthropic").messages.create(
        model="claude-sonnet-4-5", max_tokens=20000, stream=True,
        messages=[{"role": "user", "content": "b"}])
    short = await openai_client(served).chat.completions.create(
        model="deepseek-chat", stream=True, messages=[{"role": "user", "content": "c"}])
    first = [await anext(aiter(chat)), await anext(aiter(claude)), await anext(aiter(short))]
    assert all(first) and served.core.pool.inflight == 3
    usage = served.core.usage
    closing = asyncio.ensure_future(served.server.close())
    finished = "".join([c.choices[0].delta.content or "" async for c in short if c.choices])
    assert finished.endswith("done ")
    with pytest.raises(openai.APIError, match="shutting down"):
        async for _ in chat:
            pass
    with pytest.raises(anthropic.APIStatusError, match="shutting down"):
        async for _ in claude:
            pass
    await closing
    assert served.core.pool.inflight == 0
    assert usage.recorded == 3
    rows, _ = await usage_rows(served)
    by_error = sorted((row["status"], row["error_code"] or "") for row in rows)
    assert by_error == [(200, ""), (200, "server_shutting_down"), (200, "server_shutting_down")]
    assert all(row["completion_tokens"] > 0 for row in rows)


async def usage_rows(proxy: Proxy):
    """The request rows as a fresh server reads them from the saved store."""
    again = await restarted(proxy)
    try:
        return await again.core.usage.store.requests({}, 10, 0)
    finally:
        await again.server.close()


async def test_an_ndjson_stream_past_the_grace_ends_with_an_error_line(proxy: Proxy):
    served = await restarted(proxy, stream_grace=0.3)
    served.fake.enqueue(LONG)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(served.url + "/api/chat", headers=served.headers(), json={
            "model": "deepseek-chat", "messages": [{"role": "user", "content": "a"}]})
        await resp.content.readline()
        closing = asyncio.ensure_future(served.server.close())
        lines = (await resp.read()).splitlines()
        await closing
    assert b"shutting down" in lines[-1]
    await wait_until(lambda: served.core.pool.inflight == 0)


async def test_a_stream_silent_past_the_grace_is_a_503_before_any_byte(proxy: Proxy):
    served = await restarted(proxy, stream_grace=0.3)
    served.fake.enqueue(Scripted(answer="late", delivery=Delivery(chunk_delay=5)))
    asking = asyncio.ensure_future(openai_client(served).chat.completions.create(
        model="deepseek-chat", stream=True, messages=[{"role": "user", "content": "a"}]))
    await wait_until(lambda: served.fake.calls_to("chat/completion") != [])
    await served.server.close()
    with pytest.raises(openai.APIStatusError, match="shutting down") as info:
        await asking
    assert info.value.status_code == 503
    assert served.core.pool.inflight == 0 and served.core.usage.recorded == 1


async def test_a_request_waiting_for_an_account_at_the_grace_end_is_a_503(
        proxy_factory: ProxyFactory):
    one_each = await proxy_factory({"runtime": {"account_max_inflight": 1}})
    served = await restarted(one_each, stream_grace=1.0)
    served.fake.enqueue(LONG, LONG)
    client = openai_client(served)
    streams = [await client.chat.completions.create(
        model="deepseek-chat", stream=True, messages=[{"role": "user", "content": str(n)}])
        for n in range(2)]  # one per account (account_max_inflight 1)
    waiting = asyncio.ensure_future(client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "w"}]))
    await wait_until(lambda: served.core.pool.waiting == 1)
    await served.server.close()
    with pytest.raises(openai.APIStatusError, match="shutting down") as info:
        await waiting
    assert info.value.status_code == 503
    for stream in streams:
        with pytest.raises(openai.APIError, match="shutting down"):
            async for _ in stream:
                pass
    assert served.core.pool.inflight == served.core.pool.waiting == 0
    assert served.core.usage.recorded == 3


async def test_non_stream_requests_past_the_grace_end_with_the_familys_error(proxy: Proxy):
    """A non-stream answer has no stream to end in-band: it was cut with
    the connection once the handler grace ran out too. It now ends with the
    family's 503 when the grace runs out, and is recorded once."""
    served = await restarted(proxy, stream_grace=0.5)
    served.fake.enqueue(LONG, LONG)
    chat = asyncio.ensure_future(openai_client(served).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "a"}]))
    claude = asyncio.ensure_future(anthropic_client(served, "/anthropic").messages.create(
        model="claude-sonnet-4-5", max_tokens=20000, messages=[{"role": "user", "content": "b"}]))
    await wait_until(lambda: len(served.fake.calls_to("chat/completion")) == 2)
    usage = served.core.usage
    await served.server.close()
    with pytest.raises(openai.APIStatusError, match="shutting down") as info:
        await chat
    assert info.value.status_code == 503 and info.value.code == "server_shutting_down"
    with pytest.raises(anthropic.APIStatusError, match="shutting down") as claude_info:
        await claude
    assert claude_info.value.status_code == 503
    assert served.core.pool.inflight == 0
    assert usage.recorded == 2
    rows, _ = await usage_rows(served)
    assert sorted((row["status"], row["error_code"]) for row in rows) == [
        (503, "server_shutting_down")] * 2
    assert all(row["completion_tokens"] > 0 for row in rows)
