"""The fake OpenAI-compatible provider answers like one: checked with the
official ``openai`` client against the real server."""

from __future__ import annotations

import json

import aiohttp
import openai
import pytest

from ds2proxy.testing.fake_provider import FakeProvider
from ds2proxy.testing.provider_replies import ProviderReply


@pytest.fixture
async def fake():
    async with FakeProvider(["m1", "m2"], api_key="sk-fake") as provider:
        yield provider


def client(fake: FakeProvider, key: str = "sk-fake") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key=key, max_retries=0)


async def test_streams_reasoning_text_calls_and_usage(fake):
    fake.enqueue(ProviderReply(text="héllo world", reasoning="hmm", tool_calls=[
        ("lookup", '{"q": "x"}')], cuts=[1, 2], write_bytes=3))
    stream = await client(fake).chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    text, reasoning, args, usage, finish = [], [], [], None, None
    async for part in stream:
        if part.usage is not None:
            usage = part.usage
        for choice in part.choices:
            delta = choice.delta
            text.append(delta.content or "")
            reasoning.append(getattr(delta, "reasoning_content", None) or "")
            args += [c.function.arguments or "" for c in delta.tool_calls or ()]
            finish = choice.finish_reason or finish
    assert "".join(text) == "héllo world" and "".join(reasoning) == "hmm"
    assert json.loads("".join(args)) == {"q": "x"}
    assert finish == "tool_calls" and usage.completion_tokens == len("héllo world") + 3 + 10
    assert fake.chat_requests()[0]["messages"] == [{"role": "user", "content": "hi"}]


async def test_think_tags_are_cut_where_told(fake):
    reply = ProviderReply(text="answer", reasoning="why", reasoning_as="think_tags", cuts=[3])
    assert reply.pieces(reply.content) == ["<th", "ink>why</think>answer"]
    fake.enqueue(reply)
    result = await client(fake).chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == "<think>why</think>answer"


async def test_rate_limit_carries_retry_after_and_bad_key_is_401(fake):
    fake.enqueue(ProviderReply(status=429, retry_after="7"))
    with pytest.raises(openai.RateLimitError) as info:
        await client(fake).chat.completions.create(model="m1", messages=[])
    assert info.value.response.headers["Retry-After"] == "7"
    with pytest.raises(openai.AuthenticationError):
        await client(fake, "wrong").chat.completions.create(model="m1", messages=[])


async def test_a_dropped_stream_breaks_after_output(fake):
    fake.enqueue(ProviderReply(text="abcdefgh", chunk_chars=2, drop_after_chunks=2))
    seen = []
    with pytest.raises(openai.APIError):
        stream = await client(fake).chat.completions.create(model="m1", messages=[], stream=True)
        async for part in stream:
            seen += [c.delta.content for c in part.choices if c.delta.content]
    assert seen == ["ab", "cd"] and fake.dropped == 1


async def test_models_and_embeddings_batches(fake):
    api = client(fake)
    assert [m.id for m in (await api.models.list()).data] == ["m1", "m2"]
    first = await api.embeddings.create(model="e", input=["a", "b", "c"], dimensions=5)
    again = await api.embeddings.create(model="e", input="a", dimensions=5)
    assert fake.embedding_batches == [3, 1]
    assert len(first.data[0].embedding) == 5
    assert first.data[0].embedding == again.data[0].embedding
    assert first.data[1].embedding != first.data[0].embedding


async def test_calls_are_recorded_and_awaitable(fake):
    async with aiohttp.ClientSession() as session:
        async with session.post(fake.base_url + "/chat/completions", data=b"{bad") as resp:
            assert resp.status == 400
    await fake.wait_calls(1)
    assert fake.calls[0].path == "/v1/chat/completions"
