"""Several real ds2proxy processes on one real Redis, in front of the fake
upstream, driven through the official SDKs: they behave as one gateway."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis

from conftest import ACCOUNTS, TEST_KEY, shared_config
from test_dashboard_forms import Browserless
from ds2proxy.testing import Delivery, FakeDeepSeek, Scripted
from ds2proxy.testing.instances import Instance, Instances, readyz, wait_ready
from ds2proxy.testing.redis_server import RedisServer

OTHER_KEY = "other-test-key"
SLOW = Scripted(answer="tick " * 12, chunk_size=5, delivery=Delivery(chunk_delay=0.05))
LONG = Scripted(answer="slow " * 400, chunk_size=5, delivery=Delivery(chunk_delay=0.05))


def client(inst: Instance, key: str = TEST_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=inst.url + "/v1", api_key=key, max_retries=0)


async def chat(inst: Instance, text: str = "hi", **extra: str) -> str:
    async with client(inst) as api:
        stream = await api.chat.completions.create(
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


@asynccontextmanager
async def holding_a_lease(http: aiohttp.ClientSession, inst: Instance) -> AsyncIterator[None]:
    """A stream on ``inst`` that has begun (so holds its lease) until the block ends."""
    async with http.post(inst.url + "/v1/chat/completions",
                         headers={"Authorization": f"Bearer {TEST_KEY}"},
                         json={"model": "deepseek-chat", "stream": True,
                               "messages": [{"role": "user", "content": "hold"}]}) as held:
        assert held.status == 200
        await held.content.readline()
        yield


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


async def test_burst_over_three_instances(fake_upstream: FakeDeepSeek,
                                         redis_server: RedisServer, instances,
                                         redis_client: aioredis.Redis) -> None:
    """Each account logs in once for the whole cluster, and never streams more
    than its in-flight limit, while three instances share a burst."""
    fake_upstream.default_script = SLOW
    group = await instances(shared_config(fake_upstream, redis_server, {
        "runtime": {"account_max_inflight": 1, "account_max_queue": 16,
                    "queue_timeout_seconds": 30}}), 3)
    fake_upstream.latency = 0.1  # logins take a while, so they would overlap
    answers = await asyncio.gather(*(chat(inst) for inst in group.running * 2))
    assert all(text.startswith("tick") for text in answers)
    logins = [c.account for c in fake_upstream.calls_to("users/login")]
    assert sorted(logins) == sorted(email for email, _ in ACCOUNTS)
    assert set(fake_upstream.max_streaming) == {email for email, _ in ACCOUNTS}
    assert max(fake_upstream.max_streaming.values()) == 1
    await until(lambda: no_leases(redis_client))  # every lease given back
    fake_upstream.enqueue(LONG)
    await leave_mid_stream(group.running[0])
    # Given back when the client left, long before the 20 s answer would end.
    await until(lambda: no_leases(redis_client), timeout=5)


async def leave_mid_stream(inst: Instance) -> None:
    """Start a stream, read its first chunk, and hang up."""
    body = {"model": "deepseek-chat", "stream": True,
            "messages": [{"role": "user", "content": "leave"}]}
    async with aiohttp.ClientSession() as http:
        async with http.post(inst.url + "/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {TEST_KEY}"}) as resp:
            assert resp.status == 200
            await resp.content.readline()


async def test_stored_response_moves_between_instances(fake_upstream: FakeDeepSeek,
                                                       redis_server: RedisServer,
                                                       instances) -> None:
    group = await instances(shared_config(fake_upstream, redis_server,
                                          {"keys": [TEST_KEY, OTHER_KEY]}), 2)
    a, b = group.running
    fake_upstream.enqueue(Scripted(answer="first answer"), Scripted(answer="second answer"))
    async with client(a) as on_a, client(b) as on_b, client(a, OTHER_KEY) as other_a, \
            client(b, OTHER_KEY) as other_b:
        await stored_response_roundtrip(fake_upstream, on_a, on_b, other_a, other_b)


async def stored_response_roundtrip(fake_upstream: FakeDeepSeek, on_a: openai.AsyncOpenAI,
                                    on_b: openai.AsyncOpenAI, other_a: openai.AsyncOpenAI,
                                    other_b: openai.AsyncOpenAI) -> None:
    """Created on A; read, continued and deleted on B; invisible to another key."""
    created = await on_a.responses.create(model="deepseek-chat", input="remember 42")
    read = await on_b.responses.retrieve(created.id)
    assert read.id == created.id and read.output_text == "first answer"
    follow = await on_b.responses.create(model="deepseek-chat", input="what number?",
                                              previous_response_id=created.id)
    assert follow.output_text == "second answer"
    prompt = str(fake_upstream.calls_to("chat/completion")[-1].body["prompt"])
    assert "remember 42" in prompt and "first answer" in prompt  # B continued A's turn
    with pytest.raises(openai.NotFoundError):  # another caller sees nothing
        await other_b.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await other_a.responses.delete(created.id)
    await on_b.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        await on_a.responses.retrieve(created.id)


async def test_refreshed_token_is_used_by_every_instance(fake_upstream: FakeDeepSeek,
                                                        redis_server: RedisServer,
                                                        instances) -> None:
    group = await instances(shared_config(fake_upstream, redis_server), 2)
    a, b = group.running
    email = ACCOUNTS[0][0]
    pin = {"X-Ds2-Target-Account": email}
    for inst in (a, b):
        assert (await chat(inst, "first", **pin)).endswith("first")
    fake_upstream.revoke_tokens(email)  # the shared token is refused from now on
    for inst in (a, b):  # A logs in again; B takes A's new token
        assert (await chat(inst, "again", **pin)).endswith("again")
    logins = [c.account for c in fake_upstream.calls_to("users/login")]
    assert logins == [email, email]


async def test_killed_instance_leases_are_reclaimed(fake_upstream: FakeDeepSeek,
                                                   redis_server: RedisServer, instances,
                                                   redis_client: aioredis.Redis) -> None:
    ttl = 3
    group = await instances(shared_config(fake_upstream, redis_server, {
        "state": {"lease_ttl_seconds": ttl},
        "runtime": {"account_max_inflight": 1, "queue_timeout_seconds": 20}}), 2)
    a, b = group.running
    fake_upstream.enqueue(LONG, LONG)
    streams = [asyncio.create_task(chat(a, "long")) for _ in ACCOUNTS]
    await until(lambda: sum(fake_upstream.streaming.values()) == len(ACCOUNTS))
    assert await leases_held(redis_client) == len(ACCOUNTS)  # A holds every slot
    a.kill()
    killed = time.monotonic()
    for task in streams:
        with pytest.raises(openai.APIError):
            await task
    # B queues behind A's dead leases and is served once they are reclaimed.
    assert (await chat(b, "after")).endswith("You said: after")
    waited = time.monotonic() - killed
    assert waited <= ttl + ttl / 3 + 5, f"served {waited:.1f} s after the kill"
    await until(lambda: no_leases(redis_client))


async def test_redis_outage_gives_503_then_recovers(fake_upstream: FakeDeepSeek,
                                                   redis_server: RedisServer, instances,
                                                   redis_client: aioredis.Redis) -> None:
    group = await instances(shared_config(fake_upstream, redis_server), 2)
    a, b = group.running
    assert (await chat(a, "before")).endswith("before")
    fake_upstream.enqueue(Scripted(answer="tick " * 40, chunk_size=5,
                                   delivery=Delivery(chunk_delay=0.05)))
    in_flight = asyncio.create_task(chat(a, "during"))
    await until(lambda: sum(fake_upstream.streaming.values()) == 1)
    await redis_server.astop()
    async with aiohttp.ClientSession() as http:
        for inst in (a, b):
            await until(lambda: readyz_is(http, inst, 503))
            with pytest.raises(openai.APIStatusError) as caught:
                await chat(inst, "while down")
            assert caught.value.status_code == 503
            assert caught.value.body["code"] == "state_unavailable"
        async with http.post(b.url + "/v1/messages", headers={"x-api-key": TEST_KEY},
                             json={"model": "claude-sonnet-4", "max_tokens": 20,
                                   "messages": [{"role": "user", "content": "hi"}]}) as resp:
            body = await resp.json()
        assert resp.status == 503 and body["type"] == "error"
        assert "Traceback" not in str(body)
        assert (await in_flight).startswith("tick")  # a stream already running finishes
        await redis_server.astart()
        for inst in (a, b):
            await until(lambda: readyz_is(http, inst, 200))
    answers = await asyncio.gather(chat(a, "back"), chat(b, "back"))
    assert all(text.endswith("You said: back") for text in answers)
    await until(lambda: no_leases(redis_client))


async def readyz_is(http: aiohttp.ClientSession, inst: Instance, status: int) -> bool:
    return await readyz(http, inst.url) == status


async def queued(http: aiohttp.ClientSession, inst: Instance, admin_key: str) -> int:
    """Requests waiting for an account on ``inst`` (its admin queue status)."""
    async with http.get(inst.url + "/admin/queue/status",
                        headers={"Authorization": f"Bearer {admin_key}"}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["waiting"]


async def one_account_on_two(fake_upstream: FakeDeepSeek, redis_server: RedisServer,
                             instances, *, ttl: int | None = None,
                             queue_timeout: int = 30) -> Instances:
    """Two instances sharing one account that runs one request at a time,
    with a long answer queued for the request that will hold its lease."""
    email, password = ACCOUNTS[0]
    config: dict = {"accounts": [{"email": email, "password": password}],
                    "runtime": {"account_max_inflight": 1,
                                "queue_timeout_seconds": queue_timeout}}
    if ttl is not None:
        config["state"] = {"lease_ttl_seconds": ttl}
    group = await instances(shared_config(fake_upstream, redis_server, config), 2)
    fake_upstream.enqueue(LONG)
    return group


async def waiting_on(http: aiohttp.ClientSession, inst: Instance, admin_key: str,
                     request: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """``request`` started, once it waits in ``inst``'s queue."""
    task = asyncio.create_task(request)
    await until(lambda: queued(http, inst, admin_key), timeout=15)
    return task


async def test_the_longest_waiting_request_on_any_instance_is_served_first(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances,
        redis_client: aioredis.Redis) -> None:
    """One account, one request at a time, two instances. A holds the lease;
    a request waits on B, then one on A. B is frozen (SIGSTOP) and A's lease
    ends: A's own waiter hears of it first and has every chance to take it,
    but B's request is older, so the lease waits for it and B, thawed,
    serves it first; the line in Redis is empty afterwards."""
    ttl = 10  # B stays frozen for well under this: its ticket is not dropped
    group = await one_account_on_two(fake_upstream, redis_server, instances, ttl=ttl)
    a, b = group.running
    served: list[str] = []

    async def ask(inst: Instance, text: str) -> None:
        assert (await chat(inst, text)).endswith(text)
        served.append(text)

    async def a_had_its_chance(released_ms: int, calls: int) -> bool:
        """A's waiter was served, or has asked (or renewed its ticket) since."""
        if len(fake_upstream.calls_to("chat/completion")) > calls:
            return True
        scores = await redis_client.zrange("ds2proxy:leases:tickets", 0, -1, withscores=True)
        return any(score >= released_ms + ttl * 1000 for _, score in scores)

    async with aiohttp.ClientSession() as http:
        async with holding_a_lease(http, a):
            first = await waiting_on(http, b, group.admin_key, ask(b, "first"))
            second = await waiting_on(http, a, group.admin_key, ask(a, "second"))
            calls = len(fake_upstream.calls_to("chat/completion"))
            b.proc.send_signal(signal.SIGSTOP)
        try:  # the holder hung up: its lease goes back on A
            await until(lambda: no_leases(redis_client))
            released_ms = int((await redis_client.time())[0] * 1000)
            await until(lambda: a_had_its_chance(released_ms, calls), timeout=ttl / 2)
        finally:
            b.proc.send_signal(signal.SIGCONT)
        await asyncio.wait_for(asyncio.gather(first, second), 30)
    assert served == ["first", "second"]
    await until(lambda: no_leases_or_tickets(redis_server))


async def test_a_killed_instances_waiters_leave_the_line(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances,
        redis_client: aioredis.Redis) -> None:
    """B is killed with -9 while its request waits ahead of A's: its ticket
    stops being renewed and leaves the line within the lease TTL, so A's
    request is served then, not held behind a waiter that is gone."""
    ttl = 3
    group = await one_account_on_two(fake_upstream, redis_server, instances, ttl=ttl)
    a, b = group.running
    async with aiohttp.ClientSession() as http:
        async with holding_a_lease(http, a):
            doomed = await waiting_on(http, b, group.admin_key, chat(b, "doomed"))
            second = await waiting_on(http, a, group.admin_key, chat(a, "second"))
            b.kill()
            killed = time.monotonic()
        assert (await asyncio.wait_for(second, 30)).endswith("second")
    waited = time.monotonic() - killed
    assert waited <= ttl + ttl / 3 + 5, f"served {waited:.1f} s after the kill"
    with pytest.raises(openai.APIError):
        await doomed
    await until(lambda: no_leases_or_tickets(redis_server))


async def test_a_client_gone_while_queued_on_another_instance_leaves_the_line(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances,
        redis_client: aioredis.Redis) -> None:
    """A request queued on B whose client hangs up gives its place in the
    cluster's line back at once (not at its queue timeout), and never takes
    the lease when A's ends."""
    group = await one_account_on_two(fake_upstream, redis_server, instances, queue_timeout=60)
    a, b = group.running
    async with aiohttp.ClientSession() as http:
        async with holding_a_lease(http, a):
            gone = await waiting_on(http, b, group.admin_key, chat(b, "gone"))
            assert await redis_client.zcard("ds2proxy:leases:line") == 1
            gone.cancel()  # the client hangs up while queued
            with pytest.raises(asyncio.CancelledError):
                await gone
            await until(lambda: no_tickets(redis_client), timeout=5)
            assert await queued(http, b, group.admin_key) == 0
        calls = len(fake_upstream.calls_to("chat/completion"))
        await until(lambda: no_leases_or_tickets(redis_server))
    assert len(fake_upstream.calls_to("chat/completion")) == calls


async def test_a_lease_held_through_a_flushall_still_counts_on_the_other_instance(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances,
        redis_client: aioredis.Redis) -> None:
    """Redis loses its data while A streams on the one account and the links
    stay up (FLUSHALL; a restart between two pings or a failover to an empty
    replica look the same). A puts its lease back (the lease TTL is long: no
    renewal would do it in time), so a request on B waits instead of running
    a second stream on an account limited to one, and is served when A's
    ends."""
    group = await one_account_on_two(fake_upstream, redis_server, instances, ttl=60)
    a, b = group.running
    async with aiohttp.ClientSession() as http:
        async with holding_a_lease(http, a):
            await redis_client.flushall()
            waiter = await waiting_on(http, b, group.admin_key, chat(b, "after"))
            await until(lambda: settled_with_leases(redis_client, 1))
            assert len(fake_upstream.calls_to("chat/completion")) == 1
            assert not waiter.done()
        assert (await asyncio.wait_for(waiter, 30)).endswith("after")
    await until(lambda: no_leases_or_tickets(redis_server))


async def settled_with_leases(conn: aioredis.Redis, count: int) -> bool:
    """Redis has settled after losing its data and holds ``count`` leases."""
    return (not await conn.exists("ds2proxy:state:settling")
            and await leases_held(conn) == count)


async def no_tickets(conn: aioredis.Redis) -> bool:
    return not await conn.zcard("ds2proxy:leases:line")


async def no_leases_or_tickets(server: RedisServer) -> bool:
    conn = aioredis.from_url(server.url)
    try:
        return (await no_leases(conn) and not await conn.zcard("ds2proxy:leases:line")
                and not await conn.hlen("ds2proxy:leases:wants"))
    finally:
        await conn.aclose()


async def test_a_dashboard_logout_stays_refused_on_every_instance_after_a_flushall(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances,
        redis_client: aioredis.Redis) -> None:
    """Log out of the dashboard on A; Redis then loses its data (FLUSHALL)
    and B restarts, loading the logouts Redis holds: none. The session was
    accepted again on B until it expired; A now puts the logout back."""
    config = shared_config(fake_upstream, redis_server, {"admin": {"jwt_secret": "s" * 48}})
    group = await instances(config, 2)
    a = group.running[0]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        dashboard = Browserless(SimpleNamespace(url=a.url, server=SimpleNamespace(port=a.port)),
                                http)
        await dashboard.log_in(group.admin_key)
        token = next(c.value for c in http.cookie_jar
                     if c.key == dashboard.cookie("ds2proxy_admin"))

        async def refused(inst: Instance) -> bool:
            async with http.get(f"{inst.url}/admin/config",
                                headers={"Authorization": f"Bearer {token}"}) as resp:
                return resp.status == 401

        assert not await refused(group.running[1])
        status, _, _ = await dashboard.post("/admin/ui/logout", {})
        assert status == 303
        await until(lambda: refused(group.running[1]))
        await redis_client.flushall()
        b = await group.restart(1)
        await until(lambda: refused(b))
        assert await refused(a)
