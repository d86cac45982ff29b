"""Two real ds2proxy processes on one Redis behave as one gateway for the
state this covers: key rate limits, account health, the config and admin
sessions. Requests go through the official SDKs to the shipped fake upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anthropic
import ollama
import openai
import pytest
import redis.asyncio as aioredis
from conftest import ACCOUNTS, shared_config

from ds2proxy.keyring import identity_of
from ds2proxy.testing import Delivery, FakeDeepSeek, HttpFault, Misbehaviour, Scripted
from ds2proxy.testing.instances import Instance, Instances
from ds2proxy.testing.redis_server import RedisServer

USER = [{"role": "user", "content": "hello"}]
ALICE = ACCOUNTS[0][0]
Start = Callable[..., Awaitable[Instances]]


async def ask(inst: Instance, key: str) -> str:
    async with openai.AsyncOpenAI(base_url=inst.url + "/v1", api_key=key,
                                  max_retries=0) as client:
        reply = await client.chat.completions.create(model="deepseek-chat", messages=USER)
    return reply.choices[0].message.content or ""


class AdminClient:
    def __init__(self, http: aiohttp.ClientSession, inst: Instance) -> None:
        self.http, self.inst, self.token = http, inst, ""

    async def login(self, key: str) -> str:
        async with self.http.post(self.inst.url + "/admin/login",
                                  json={"admin_key": key}) as resp:
            assert resp.status == 200, await resp.text()
            self.token = (await resp.json())["token"]
        return self.token

    async def call(self, method: str, path: str, json: Any = None,
                   token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with self.http.request(method, self.inst.url + path, json=json,
                                     headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def key_names(self) -> set[str]:
        status, body = await self.call("GET", "/admin/keys")
        assert status == 200, body
        return {k["name"] for k in body["keys"]}


async def within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    """Seconds until ``check()`` holds; fails once ``seconds`` have passed."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not seen within {seconds} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_a_keys_rpm_limit_holds_across_instances(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances: Start) -> None:
    config = shared_config(fake_upstream, redis_server, {
        "keys": [{"name": "team", "key": "sk-team-shared", "limits": {"rpm": 3}}]})
    group = await instances(config, 2)
    a, b = group.running
    outcomes = []
    for inst in (a, b, a, b, a, b):
        try:
            outcomes.append(bool(await ask(inst, "sk-team-shared")))
        except openai.RateLimitError as exc:
            assert exc.body["code"] == "key_rate_limit"
            assert 1 <= int(exc.response.headers["Retry-After"]) <= 60
            outcomes.append(False)
    assert outcomes == [True, True, True, False, False, False]
    async with anthropic.AsyncAnthropic(base_url=a.url + "/anthropic",
                                        api_key="sk-team-shared", max_retries=0) as client:
        with pytest.raises(anthropic.RateLimitError) as caught:  # any family, same window
            await client.messages.create(model="claude-sonnet-4-5", max_tokens=32,
                                         messages=USER)
    assert caught.value.body["error"]["type"] == "rate_limit_error"


async def test_an_implied_keys_rpm_limit_holds_across_instances(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances: Start) -> None:
    """Ollama clients that send no key are counted, once each, in the
    implied key's cluster-wide window, like those that send it."""
    config = shared_config(fake_upstream, redis_server, {
        "keys": [{"name": "team", "key": "sk-team-shared", "limits": {"rpm": 3}}],
        "plugins": {"ollama": {"implied_key": "sk-team-shared"}}})
    group = await instances(config, 2)
    a, b = group.running
    outcomes = []
    for inst in (a, b, a, b):
        try:
            reply = await ollama.AsyncClient(host=inst.url).chat(model="deepseek-chat",
                                                                  messages=USER)
            outcomes.append(bool(reply.message.content))
        except ollama.ResponseError as exc:
            assert exc.status_code == 429 and "3 requests per minute" in exc.error
            outcomes.append(False)
    assert outcomes == [True, True, True, False]
    with pytest.raises(openai.RateLimitError):  # the same window as the key sent openly
        await ask(a, "sk-team-shared")


def slow(chunks: int) -> Scripted:
    return Scripted(answer="slow " * chunks, chunk_size=5, delivery=Delivery(chunk_delay=0.05))


async def open_stream(api: openai.AsyncOpenAI) -> Any:
    """A stream whose first chunk has arrived (so its turn is under way)."""
    stream = await api.chat.completions.create(model="deepseek-chat", messages=USER,
                                               stream=True)
    chunks = stream.__aiter__()
    await chunks.__anext__()
    return chunks


async def rest_of(chunks: Any) -> str:
    return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def test_a_keys_concurrency_limit_holds_across_instances(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances: Start) -> None:
    """``concurrent: 2`` over two instances: the fake upstream never streams
    more than 2 at once for the key (one account serves them all), the next
    request on either instance gets the 429, and a client that hangs up
    mid-stream gives its slot back at once."""
    config = shared_config(fake_upstream, redis_server, {
        "accounts": [{"email": ALICE, "password": ACCOUNTS[0][1]}],
        "runtime": {"account_max_inflight": 4},
        "keys": [{"name": "pair", "key": "sk-pair", "limits": {"concurrent": 2}}]})
    group = await instances(config, 2)
    a, b = group.running
    fake_upstream.default_script = slow(40)
    clients = [openai.AsyncOpenAI(base_url=inst.url + "/v1", api_key="sk-pair", max_retries=0)
               for inst in (a, b)]
    conn = aioredis.from_url(redis_server.url)

    async def no_slots() -> bool:
        now = (await conn.time())[0] * 1000
        return await conn.zcount(f"ds2proxy:slots:{identity_of('sk-pair')}", now, "+inf") == 0

    async def whole(api: openai.AsyncOpenAI) -> str:
        return await rest_of(await open_stream(api))

    try:
        streams = [await open_stream(api) for api in clients]
        for api in clients:
            with pytest.raises(openai.RateLimitError) as caught:
                await api.chat.completions.create(model="deepseek-chat", messages=USER,
                                                  stream=True)
            assert caught.value.body["code"] == "key_concurrency_limit"
        texts = await asyncio.gather(*(rest_of(s) for s in streams))
        assert all(t.startswith("slow") for t in texts)
        assert fake_upstream.max_streaming == {ALICE: 2}
        await within(5, no_slots)  # both given back once their streams ended
        again = await asyncio.gather(*(whole(api) for api in clients))
        assert all(t.startswith("slow") for t in again)
        await within(5, no_slots)
        fake_upstream.default_script = slow(400)  # 20 s, far longer than the wait below
        async with aiohttp.ClientSession() as http:
            async with http.post(a.url + "/v1/chat/completions",
                                 json={"model": "deepseek-chat", "stream": True,
                                       "messages": USER},
                                 headers={"Authorization": "Bearer sk-pair"}) as resp:
                assert resp.status == 200
                await resp.content.readline()
        await within(5, no_slots)  # the client hung up: its slot is back long before 20 s
    finally:
        for api in clients:
            await api.close()
        await conn.aclose()


async def test_a_request_refused_for_concurrency_spends_none_of_the_keys_rpm(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances: Start) -> None:
    """``rpm: 2, concurrent: 1``: the rpm window and the slot are one atomic
    decision, so a request refused because the key's one slot is busy leaves
    the window as it was, and the key's second turn still runs; a count
    refused over the rpm takes no slot either (the next turn is refused for
    the rpm, not for a slot left behind)."""
    config = shared_config(fake_upstream, redis_server, {
        "keys": [{"name": "one", "key": "sk-one", "limits": {"rpm": 2, "concurrent": 1}}]})
    group = await instances(config, 2)
    a, b = group.running
    fake_upstream.default_script = slow(20)
    conn = aioredis.from_url(redis_server.url)
    window = f"ds2proxy:rpm:{identity_of('sk-one')}"

    async def no_slots() -> bool:
        return await conn.zcard(f"ds2proxy:slots:{identity_of('sk-one')}") == 0
    try:
        async with openai.AsyncOpenAI(base_url=a.url + "/v1", api_key="sk-one",
                                      max_retries=0) as api_a, \
                openai.AsyncOpenAI(base_url=b.url + "/v1", api_key="sk-one",
                                   max_retries=0) as api_b:
            chunks = await open_stream(api_a)
            for _ in range(3):
                with pytest.raises(openai.RateLimitError) as caught:
                    await api_b.chat.completions.create(model="deepseek-chat", messages=USER)
                assert caught.value.body["code"] == "key_concurrency_limit"
            assert await conn.zcard(window) == 1
            assert (await rest_of(chunks)).startswith("slow")
            fake_upstream.default_script = Scripted(answer="quick")
            await within(5, no_slots)  # the finished stream's slot goes back in the background
            assert await ask(b, "sk-one") == "quick"
            assert await conn.zcard(window) == 2
            await within(5, no_slots)
            with pytest.raises(openai.RateLimitError) as caught:
                await ask(a, "sk-one")
            assert caught.value.body["code"] == "key_rate_limit"
            assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 60
            assert await no_slots()
    finally:
        await conn.aclose()


async def test_a_cooldown_seen_by_one_instance_applies_on_the_other(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances: Start) -> None:
    config = shared_config(fake_upstream, redis_server, {
        "accounts": [{"email": ALICE, "password": ACCOUNTS[0][1]}],
        "health": {"jitter": 0}})
    group = await instances(config, 2)
    a, b = group.running
    fake_upstream.misbehave(ALICE, Misbehaviour(completion=HttpFault(429)))
    with pytest.raises(openai.APIStatusError):
        await ask(a, "test-key")
    tried = len(fake_upstream.calls_to("chat/completion"))
    async with aiohttp.ClientSession() as http:
        admin = AdminClient(http, b)
        await admin.login(group.admin_key)

        async def cooling_on_b() -> bool:
            _, listing = await admin.call("GET", "/admin/accounts")
            return listing["items"][0]["state"] == "cooling_down"

        await within(2.0, cooling_on_b)
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(b, "test-key")
    assert caught.value.body["code"] == "accounts_cooling_down"
    assert len(fake_upstream.calls_to("chat/completion")) == tried  # B never tried it


async def test_an_accounts_hourly_cap_holds_across_instances(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances: Start) -> None:
    config = shared_config(fake_upstream, redis_server, {
        "accounts": [{"email": ALICE, "password": ACCOUNTS[0][1]}],
        "health": {"pacing": {"max_per_hour": 2}},
        "runtime": {"queue_timeout_seconds": 1}})
    group = await instances(config, 2)
    a, b = group.running
    assert await ask(a, "test-key")
    assert await ask(b, "test-key")
    for inst in (a, b):  # the cap is the cluster's: neither instance starts a third
        with pytest.raises(openai.RateLimitError):
            await ask(inst, "test-key")
    assert len(fake_upstream.calls_to("chat/completion")) == 2


async def test_admin_changes_and_sessions_are_the_clusters(
        fake_upstream: FakeDeepSeek, redis_server: RedisServer, instances: Start) -> None:
    group = await instances(shared_config(fake_upstream, redis_server), 2)
    a, b = group.running
    async with aiohttp.ClientSession() as http:
        on_a, on_b = AdminClient(http, a), AdminClient(http, b)
        await on_a.login(group.admin_key)
        await on_b.login(group.admin_key)  # A's and B's sessions: one signing secret

        status, made = await on_a.call("POST", "/admin/keys", {"name": "from-a"})
        assert status == 200, made

        async def b_has(*names: str) -> bool:
            return set(names) <= await on_b.key_names()

        async def a_has(*names: str) -> bool:
            return set(names) <= await on_a.key_names()

        await within(1.0, lambda: b_has("from-a"))
        assert await ask(b, made["key"])  # and B serves the new key

        writes = [on.call("POST", "/admin/keys", {"name": f"{side}-{i}"})
                  for i in range(5) for side, on in (("a", on_a), ("b", on_b))]
        assert {status for status, _ in await asyncio.gather(*writes)} == {200}
        every = {f"{side}-{i}" for i in range(5) for side in "ab"} | {"from-a"}
        await within(1.0, lambda: a_has(*every))  # no write lost the other's
        await within(1.0, lambda: b_has(*every))

        old_b = on_b.token
        status, _ = await on_a.call("POST", "/admin/settings/password",
                                    {"new_password": "a-new-password"})
        assert status == 200

        async def b_refuses_old_token() -> bool:
            return (await on_b.call("GET", "/admin/keys", token=old_b))[0] == 401

        await within(1.0, b_refuses_old_token)
        await on_b.login("a-new-password")
        assert await on_b.key_names() >= every
        session_b = on_b.token
        assert (await on_b.call("GET", "/admin/keys", token=session_b))[0] == 200
