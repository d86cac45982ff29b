"""Several real ds2proxy processes on one real Redis, in front of the fake
upstream, driven through the official SDKs: they behave as one gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis

from conftest import ACCOUNTS, TEST_KEY, shared_config
from ds2proxy.testing import Delivery, FakeDeepSeek, Scripted
from ds2proxy.testing.instances import Instance, readyz, wait_ready
from ds2proxy.testing.redis_server import RedisServer

OTHER_KEY = "other-test-key"
SLOW = Scripted(answer="tick " * 12, chunk_size=5, delivery=Delivery(chunk_delay=0.05))


def client(inst: Instance, key: str = TEST_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=inst.url + "/v1", api_key=key, max_retries=0)


async def chat(inst: Instance, text: str = "hi", **extra: str) -> str:
    stream = await client(inst).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": text}], stream=True,
        extra_headers=extra or None)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    conn = aioredis.from_url(redis_server.url)
    yield conn
    await conn.aclose()


async def leases_held(conn: aioredis.Redis) -> int:
    """Live leases in Redis, over every account (expired ones do not count)."""
    now = (await conn.time())[0] * 1000
    return sum([await conn.zcount(key, now, "+inf")
                async for key in conn.scan_iter("ds2proxy:leases:account:*")])


async def no_leases(conn: aioredis.Redis) -> bool:
    return await leases_held(conn) == 0


async def until(condition, timeout: float = 15.0) -> None:
    """Wait for ``condition()`` (sync or async) to hold."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_account_limit_holds_across_instances(fake_upstream: FakeDeepSeek,
                                                    redis_server: RedisServer, instances,
                                                    redis_client: aioredis.Redis) -> None:
    fake_upstream.default_script = SLOW
    group = await instances(shared_config(fake_upstream, redis_server, {
        "runtime": {"account_max_inflight": 1, "account_max_queue": 16,
                    "queue_timeout_seconds": 30}}), 2)
    a, b = group.running
    answers = await asyncio.gather(*(chat(inst) for inst in [a, b] * 4))
    assert all(text.startswith("tick") for text in answers)
    # Two instances, one slot per account: never two streams on one account.
    assert set(fake_upstream.max_streaming) == {email for email, _ in ACCOUNTS}
    assert max(fake_upstream.max_streaming.values()) == 1
    await until(lambda: no_leases(redis_client))  # every lease given back
