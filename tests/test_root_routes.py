"""OpenAI routes without the ``/v1`` prefix, for clients given a bare host:
the official client pointed at the root gets exactly what ``/v1`` serves,
the Claude ``/messages`` root route is untouched, and the plugin setting
turns the shortcuts off. Also seed 002's request to the letter."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from ds2proxy.testing import Scripted
from ds2proxy.testing.clients import anthropic_client, openai_client

USER = [{"role": "user", "content": "hello"}]


async def get_json(proxy, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + path, headers=proxy.headers()) as resp:
            return resp.status, await resp.json()


async def test_models_at_the_root_equal_v1(proxy):
    listed = await openai_client(proxy, "").models.list()
    _, v1 = await get_json(proxy, "/v1/models")
    assert [m.id for m in listed.data] == [m["id"] for m in v1["data"]]
    one = await openai_client(proxy, "").models.retrieve("gpt-4o")
    assert one.id == "deepseek-chat"
    assert await get_json(proxy, "/models/gpt-4o") == await get_json(proxy, "/v1/models/gpt-4o")
    status, body = await get_json(proxy, "/models/no-such-model")
    assert status == 404 and body["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_completions_at_the_root(proxy, stream):
    proxy.fake.enqueue(Scripted(thinking="hmm", answer="Hi there."))
    resp = await openai_client(proxy, "").chat.completions.create(
        model="deepseek-reasoner", messages=USER, stream=stream)
    if stream:
        chunks = [c async for c in resp]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:
        text = resp.choices[0].message.content
        assert resp.choices[0].message.model_extra["reasoning_content"] == "hmm"
    assert text == "Hi there."


async def test_responses_create_and_get_at_the_root(proxy):
    proxy.fake.enqueue(Scripted(answer="Stored answer."))
    client = openai_client(proxy, "")
    created = await client.responses.create(model="gpt-5", input="hi")
    assert created.output_text == "Stored answer."
    fetched = await client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == "Stored answer."
    status, via_v1 = await get_json(proxy, f"/v1/responses/{created.id}")
    assert status == 200 and via_v1["id"] == created.id


async def test_embeddings_at_the_root(proxy):
    root = await openai_client(proxy, "").embeddings.create(model="text-embedding-3-small",
                                                            input="same text", dimensions=16)
    sdk = openai_client(proxy)
    v1 = await sdk.embeddings.create(model="text-embedding-3-small", input="same text",
                                     dimensions=16)
    assert root.data[0].embedding == v1.data[0].embedding


async def test_claude_root_messages_route_is_untouched(proxy):
    proxy.fake.enqueue(Scripted(answer="Claude here."))
    client = anthropic_client(proxy)
    message = await client.messages.create(model="claude-sonnet-4-5", max_tokens=100,
                                           messages=USER)
    assert message.content[0].text == "Claude here."


async def test_setting_turns_the_shortcuts_off(proxy_factory):
    proxy = await proxy_factory({"plugins": {"openai": {"root_routes": False}}})
    with pytest.raises(openai.NotFoundError):
        await openai_client(proxy, "").chat.completions.create(model="deepseek-chat",
                                                               messages=USER)
    status, _ = await get_json(proxy, "/v1/models")
    assert status == 200


async def test_seed_002_request_as_written(proxy):
    """deepseek-v3-1-250821 with thinking.type enabled / auto, include_usage."""
    proxy.fake.enqueue(Scripted(thinking="thinking", answer="你好"), Scripted(answer="你好"))
    client = openai_client(proxy)
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "你好"}]
    for kind, upstream in (("enabled", True), ("auto", False)):
        stream = await client.chat.completions.create(
            model="deepseek-v3-1-250821", max_tokens=1000, messages=messages,
            temperature=1.0, stream=True, stream_options={"include_usage": True},
            extra_body={"thinking": {"type": kind}})
        chunks = [c async for c in stream]
        assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
        assert all(c.model == "deepseek-v3-1-250821" for c in chunks)
        body = proxy.fake.calls_to("chat/completion")[-1].body
        # auto keeps the model default: V3.1 answers as deepseek-chat, thinking off.
        assert body["thinking_enabled"] is upstream and body["model_type"] == "default"
