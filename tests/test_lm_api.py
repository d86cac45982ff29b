"""The ``/lm/v2`` surface through the official ``openai`` client: reasoning
inline before the answer, the surface's finish_reason words, usage on the
last chunk, and 400s naming the offending field. The wire format,
recordings and the thinking switch are pinned in ``test_degpt_lm_wire``."""

from __future__ import annotations

import asyncio
import re

import aiohttp

import openai
import pytest

from ds2proxy.testing import Scripted
from ds2proxy.testing.clients import openai_client

USER = [{"role": "user", "content": "hello"}]


async def test_thinking_model_puts_reasoning_inline(proxy):
    proxy.fake.enqueue(Scripted(thinking="Today is Monday.", answer="It is Monday."))
    resp = await openai_client(proxy, "/lm/v2").chat.completions.create(
        model="deepseek-reasoner", messages=USER)
    choice = resp.choices[0]
    assert choice.message.content == "<think>\nToday is Monday.\n</think>\n\nIt is Monday."
    assert "reasoning_content" not in (choice.message.model_extra or {})
    assert choice.finish_reason == "normal"
    assert resp.model == "deepseek-reasoner"
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


async def test_stream_inline_reasoning_and_usage_on_the_last_chunk(proxy):
    proxy.fake.enqueue(Scripted(thinking="Let me see.", answer="Hi!"))
    stream = await openai_client(proxy, "/lm/v2").chat.completions.create(
        model="deepseek-reasoner", messages=USER, stream=True,
        stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "<think>\nLet me see.\n</think>\n\nHi!"
    assert [c.usage is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].choices[0].finish_reason == "normal"
    assert chunks[-1].usage.completion_tokens > 0


async def test_token_limit_finishes_with_length(proxy):
    proxy.fake.enqueue(Scripted(answer="word " * 200))
    resp = await openai_client(proxy, "/lm/v2").chat.completions.create(
        model="deepseek-chat", messages=USER, max_completion_tokens=5)
    assert resp.choices[0].finish_reason == "length"
    assert 0 < len(resp.choices[0].message.content) < len("word " * 200)


async def test_sync_client_non_thinking_model_is_plain(proxy):
    sync = openai_client(proxy, "/lm/v2", sync=True)
    proxy.fake.enqueue(Scripted(thinking="hidden", answer="Plain answer."),
                       Scripted(thinking="hidden", answer="Plain answer."))

    def run() -> tuple[str, str]:
        resp = sync.chat.completions.create(model="deepseek-chat", messages=USER)
        chunks = sync.chat.completions.create(model="deepseek-chat", messages=USER,
                                              stream=True)
        return (resp.choices[0].message.content,
                "".join(c.choices[0].delta.content or "" for c in chunks))

    assert await asyncio.to_thread(run) == ("Plain answer.", "Plain answer.")


async def test_multi_turn_conversation_reaches_upstream(proxy):
    proxy.fake.enqueue(Scripted(answer="Paris."))
    await openai_client(proxy, "/lm/v2").chat.completions.create(model="deepseek-chat", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Again?"}])
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert "Be brief." in prompt and "Capital of France?" in prompt
    assert prompt.endswith("<｜User｜>Again?<｜Assistant｜>")


@pytest.mark.parametrize("extra, param", [
    ({"temperature": 0}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"penalty_score": 0.5}, "penalty_score"),
    ({"frequency_penalty": 3}, "frequency_penalty"),
    ({"presence_penalty": -2.5}, "presence_penalty"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
])
async def test_out_of_range_is_a_400_naming_the_field(proxy, extra, param):
    extra = dict(extra)
    messages = extra.pop("messages", USER)
    with pytest.raises(openai.BadRequestError) as info:
        sdk = openai_client(proxy, "/lm/v2")
        await sdk.chat.completions.create(model="deepseek-chat", messages=messages,
                                          extra_body=extra)
    assert info.value.body["param"] == param
    assert param in info.value.body["message"]
    assert info.value.body["type"] == "invalid_request_error"
    assert proxy.fake.calls_to("chat/completion") == []


async def lm_post(proxy, body: dict) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/lm/v2/chat/completions", json=body,
                             headers=proxy.headers()) as resp:
            assert resp.status == 200
            return await resp.json()


async def test_no_model_uses_the_documented_default_with_seed_ids_and_usage(proxy):
    proxy.fake.enqueue(Scripted(answer="Beijing is the capital."))
    body = await lm_post(proxy, {"messages": USER})
    assert body["model"] == "deepseek-chat"
    assert proxy.fake.calls_to("chat/completion")[0].body["model_type"] == "default"
    assert re.fullmatch(r"gd-[a-z0-9]{10}", body["id"])
    usage = body["usage"]
    assert list(usage) == ["prompt_tokens", "prompt_tokens_details", "completion_tokens",
                           "total_tokens"]
    assert usage["prompt_tokens_details"] == 0 and usage["prompt_tokens"] > 0


async def test_default_model_follows_the_plugin_setting(proxy_factory):
    proxy = await proxy_factory({"plugins": {"lm": {"default_model": "deepseek-r1"}}})
    proxy.fake.enqueue(Scripted(thinking="hmm", answer="ok"))
    body = await lm_post(proxy, {"messages": USER})
    assert body["model"] == "deepseek-r1"
    assert body["choices"][0]["message"]["content"].startswith("<think>\nhmm")


async def test_stream_chunks_share_one_seed_shaped_id(proxy):
    proxy.fake.enqueue(Scripted(answer="one two three", chunk_size=4))
    chunks = await openai_client(proxy, "/lm/v2").chat.completions.create(
        model="deepseek-v3-1-250821", messages=USER, stream=True)
    ids = {chunk.id async for chunk in chunks}
    assert len(ids) == 1 and re.fullmatch(r"gd-[a-z0-9]{10}", ids.pop())
