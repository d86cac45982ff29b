"""Routes and fall-back: the next target only when the previous cannot serve
before any output; the served target recorded; provider cooldowns honour
Retry-After; think tags split at every boundary end to end."""

from __future__ import annotations

import json
import time
from email.utils import formatdate

import openai
import pytest

from ds2proxy.health import Failure
from ds2proxy.health.settings import MAX_COOLDOWN
from ds2proxy.testing import Delivery, Scripted
from ds2proxy.testing.fake_provider import FakeProvider
from ds2proxy.testing.provider_replies import ProviderReply

from provider_util import PROVIDER_KEY, PROVIDER_MODEL, fake_provider, provider_config  # noqa: F401

USER = [{"role": "user", "content": "hi"}]


def client(proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=proxy.key, max_retries=0)


async def served_rows(proxy) -> list[dict]:
    store = proxy.core.usage.store
    await store.flush()
    rows, _ = await store.requests({}, 50, 0)
    return [r for r in rows if r["route"] == "/v1/chat/completions"]


def cool_every_account(proxy) -> None:
    for account in proxy.core.pool.accounts():
        proxy.core.pool.health.failed(account.identifier, Failure("rate_limited", "test"))


@pytest.fixture
async def fallback(proxy_factory, fake_provider):  # noqa: F811
    """deepseek-chat: the pool, then the provider; deepseek-reasoner: the other way round."""
    doc = provider_config(fake_provider)
    doc["model_routes"] = {"deepseek-chat": ["pool", "prov:deepseek-chat"],
                           "deepseek-reasoner": ["prov:qwen-max", "pool"]}
    proxy = await proxy_factory(doc)
    proxy.provider = fake_provider
    return proxy


async def test_the_pool_serves_first_and_says_so(fallback):
    fallback.fake.enqueue(Scripted(answer="from the pool"))
    raw = await client(fallback).chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=USER)
    assert raw.parse().choices[0].message.content == "from the pool"
    assert raw.headers["X-DS2Proxy-Served-By"] == "pool"
    assert fallback.provider.calls == []
    (row,) = await served_rows(fallback)
    assert row["served_by"] == "pool" and row["account"].endswith("@example.com")


async def test_an_exhausted_pool_falls_back_to_the_provider(fallback):
    cool_every_account(fallback)
    fallback.provider.enqueue(ProviderReply(text="from the provider", usage=(4, 2)))
    raw = await client(fallback).chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
    assert text == "from the provider"
    assert raw.headers["X-DS2Proxy-Served-By"] == "prov:deepseek-chat"
    assert fallback.provider.chat_requests()[0]["model"] == "deepseek-chat"
    assert fallback.fake.calls_to("chat/completion") == []
    (row,) = await served_rows(fallback)
    assert (row["served_by"], row["status"], row["prompt_tokens"]) == ("prov:deepseek-chat",
                                                                       200, 4)


async def test_a_pool_failing_before_output_falls_back(fallback):
    from ds2proxy.testing import HttpFault
    fallback.fake.enqueue(*[HttpFault(502)] * 6)
    fallback.provider.enqueue(ProviderReply(text="rescued"))
    answer = await client(fallback).chat.completions.create(model="deepseek-chat",
                                                            messages=USER)
    assert answer.choices[0].message.content == "rescued"


async def test_no_fall_back_once_the_pool_has_streamed(fallback):
    fallback.fake.enqueue(Scripted(answer="partial answer that breaks", chunk_size=4,
                                   delivery=Delivery(drop_after=3, abort=True)))
    stream = await client(fallback).chat.completions.create(model="deepseek-chat",
                                                            messages=USER, stream=True)
    seen = []
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            seen += [c.delta.content for c in chunk.choices if c.delta.content]
    assert "".join(seen) and fallback.provider.calls == []


async def test_no_fall_back_once_the_provider_has_streamed(fallback):
    fallback.provider.enqueue(ProviderReply(text="abcdefgh", chunk_chars=2,
                                            drop_after_chunks=2))
    stream = await client(fallback).chat.completions.create(model="deepseek-reasoner",
                                                            messages=USER, stream=True)
    seen = []
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            seen += [c.delta.content for c in chunk.choices if c.delta.content]
    assert "".join(seen) == "abcd"
    assert fallback.fake.calls_to("chat/completion") == []
    (row,) = await served_rows(fallback)
    assert row["served_by"] == "prov:qwen-max" and row["error_code"] == "upstream_error"


async def test_a_rate_limited_provider_cools_down_for_its_retry_after(fallback):
    fallback.provider.enqueue(ProviderReply(status=429, retry_after="30"))
    fallback.fake.enqueue(Scripted(answer="pool one"), Scripted(answer="pool two"))
    for expected in ("pool one", "pool two"):
        raw = await client(fallback).chat.completions.with_raw_response.create(
            model="deepseek-reasoner", messages=USER)
        assert raw.parse().choices[0].message.content == expected
        assert raw.headers["X-DS2Proxy-Served-By"] == "pool"
    assert len(fallback.provider.chat_requests()) == 1  # the second skipped the provider
    health = fallback.core.providers.health
    assert 28 <= health.seconds_left("prov") <= 30
    assert health.view("prov")["state"] == "cooling_down"


async def test_a_lone_cooling_provider_answers_429_with_retry_after(proxy_factory,
                                                                    fake_provider):  # noqa: F811
    proxy = await proxy_factory(provider_config(fake_provider))
    fake_provider.enqueue(ProviderReply(status=429, retry_after="12"))
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as info:
            await client(proxy).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
        assert 10 <= int(info.value.response.headers["Retry-After"]) <= 12
    assert len(fake_provider.calls) == 1


@pytest.mark.parametrize("ahead, lowest, highest", [
    (120, 100, 120),  # an HTTP date two minutes ahead: about two minutes
    (10**10, MAX_COOLDOWN - 5, MAX_COOLDOWN),  # centuries ahead: the longest cooldown
])
async def test_a_providers_retry_after_date_is_honoured_and_capped(
        proxy_factory, fake_provider, ahead, lowest, highest):  # noqa: F811
    """A provider's Retry-After given as an HTTP date was ignored (the backoff
    decided), and one in seconds had no ceiling; both now read as an account's."""
    proxy = await proxy_factory(provider_config(fake_provider))
    fake_provider.enqueue(ProviderReply(status=429, retry_after=formatdate(
        time.time() + ahead, usegmt=True)))
    with pytest.raises(openai.RateLimitError):
        await client(proxy).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert lowest <= proxy.core.providers.health.seconds_left("prov") <= highest


async def test_provider_5xx_then_timeout_fall_through_to_the_next_provider(proxy_factory):
    async with FakeProvider(["m"]) as first, FakeProvider(["m"]) as second, \
            FakeProvider(["m"]) as third:
        doc = {"providers": [{"name": "a", "base_url": first.base_url},
                             {"name": "b", "base_url": second.base_url,
                              "timeout_seconds": 0.3},
                             {"name": "c", "base_url": third.base_url}],
               "model_routes": {"team-*": ["a:m", "b:m", "c:m"]}}
        proxy = await proxy_factory(doc)
        first.enqueue(ProviderReply(status=503))
        second.enqueue(ProviderReply(delay=5, text="too late"))
        third.enqueue(ProviderReply(text="third answers"))
        raw = await client(proxy).chat.completions.with_raw_response.create(
            model="team-x", messages=USER)
        assert raw.parse().choices[0].message.content == "third answers"
        assert raw.headers["X-DS2Proxy-Served-By"] == "c:m"
        assert [len(p.calls) for p in (first, second, third)] == [1, 1, 1]


async def test_a_request_error_is_not_retried_elsewhere(fallback):
    fallback.provider.enqueue(ProviderReply(status=400, error_message="bad temperature"))
    with pytest.raises(openai.BadRequestError) as info:
        await client(fallback).chat.completions.create(model="deepseek-reasoner", messages=USER)
    assert "bad temperature" in info.value.message
    assert fallback.fake.calls_to("chat/completion") == []
    assert fallback.core.providers.health.seconds_left("prov") == 0


DSML_CALL = ("Let me check.\n\n<|DSML|tool_calls>\n  <|DSML|invoke name=\"get_weather\">\n"
             "    <|DSML|parameter name=\"city\"><![CDATA[Rome]]></|DSML|parameter>\n"
             "  </|DSML|invoke>\n</|DSML|tool_calls>")


async def test_a_provider_without_tools_gets_them_in_the_prompt(proxy_factory,
                                                                fake_provider):  # noqa: F811
    proxy = await proxy_factory(provider_config(fake_provider, tools=False))
    fake_provider.enqueue(ProviderReply(text=DSML_CALL, chunk_chars=7, usage=(40, 9)))
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}}}}}]
    answer = await client(proxy).chat.completions.create(model=PROVIDER_MODEL, messages=USER,
                                                         tools=tools)
    (call,) = answer.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather",
                                                                          {"city": "Rome"})
    assert answer.choices[0].finish_reason == "tool_calls"
    assert "DSML" not in (answer.choices[0].message.content or "")
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (40, 9)
    (sent,) = fake_provider.chat_requests()
    assert "tools" not in sent and len(sent["messages"]) == 1
    assert "get_weather" in sent["messages"][0]["content"]


async def test_the_provider_key_never_reaches_the_caller(fallback):
    fallback.provider.api_key = "another-key"
    with pytest.raises(openai.APIStatusError) as info:
        await client(fallback).chat.completions.create(model="qwen-turbo", messages=USER)
    assert info.value.status_code == 502 and PROVIDER_KEY not in str(info.value.body)


THOUGHT = "<think>why é</think>Hi"


async def test_think_tags_split_at_every_boundary_end_to_end(proxy_factory,
                                                              fake_provider):  # noqa: F811
    proxy = await proxy_factory(provider_config(fake_provider, reasoning="think_tags"))
    for cut in range(len(THOUGHT) + 1):
        fake_provider.enqueue(ProviderReply(text="Hi", reasoning="why é",
                                            reasoning_as="think_tags", cuts=[cut],
                                            write_bytes=1 if cut == 9 else None))
        stream = await client(proxy).chat.completions.create(model=PROVIDER_MODEL,
                                                             messages=USER, stream=True)
        text, reasoning = [], []
        async for chunk in stream:
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                reasoning.append((choice.delta.model_extra or {}).get("reasoning_content")
                                 or "")
        assert ("".join(reasoning), "".join(text)) == ("why é", "Hi"), cut


async def test_a_full_provider_hands_over_or_answers_429(proxy_factory,
                                                          fake_provider):  # noqa: F811
    import asyncio

    doc = provider_config(fake_provider, max_inflight=1)
    doc["model_routes"] = {"deepseek-reasoner": ["prov:qwen-max", "pool"]}
    proxy = await proxy_factory(doc)
    fake_provider.enqueue(ProviderReply(text="slow", delay=3))
    slow = asyncio.ensure_future(client(proxy).chat.completions.create(
        model=PROVIDER_MODEL, messages=USER))
    await fake_provider.wait_calls(1)
    proxy.fake.enqueue(Scripted(answer="the pool took it"))
    raw = await client(proxy).chat.completions.with_raw_response.create(
        model="deepseek-reasoner", messages=USER)
    assert raw.parse().choices[0].message.content == "the pool took it"
    assert raw.headers["X-DS2Proxy-Served-By"] == "pool"
    with pytest.raises(openai.RateLimitError) as info:
        await client(proxy).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert info.value.code == "provider_busy"
    assert (await slow).choices[0].message.content == "slow"
    assert len(fake_provider.calls) == 1
    assert proxy.core.providers.health.seconds_left("prov") == 0


@pytest.mark.parametrize("requested, sent", [
    ("deepseek-reasoner-nothinking", "qwen-max"),  # a route's name, thinking off
    ("qwen-max-nothinking", "qwen-max"),  # a listed provider model, thinking off
    ("Qwen-Turbo-NoThinking", "Qwen-Turbo"),  # a provider glob, thinking off
])
async def test_a_nothinking_name_goes_where_its_base_goes_without_reasoning(
        fallback, requested, sent):
    """The suffix the pool honours everywhere escaped a route to the pool,
    reached a provider glob as a model it does not have, or was unknown for a
    listed provider model; and the reasoning came back regardless."""
    fallback.provider.enqueue(ProviderReply(text="plain", reasoning="hidden"))
    raw = await client(fallback).chat.completions.with_raw_response.create(
        model=requested, messages=USER)
    message = raw.parse().choices[0].message
    assert raw.headers["X-DS2Proxy-Served-By"] == f"prov:{sent}"
    assert fallback.provider.chat_requests()[0]["model"] == sent
    assert (message.content, (message.model_extra or {}).get("reasoning_content")) == (
        "plain", None)
    assert fallback.fake.calls_to("chat/completion") == []
