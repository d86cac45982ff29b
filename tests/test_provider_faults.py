"""A provider that misbehaves on the wire: chunks of the wrong shape, answers
that are not event streams, redirects, error bodies in pieces. Each reaches
the client as a provider failure in its family's shape (a 502 that the route
may fall back from), never as an internal error or a leaked secret."""

from __future__ import annotations

import json

import openai
import pytest

from ds2proxy.testing import Scripted
from ds2proxy.testing.provider_replies import ProviderReply

from provider_util import PROVIDER_KEY, PROVIDER_MODEL, fake_provider, provider_config  # noqa: F401

USER = [{"role": "user", "content": "hi"}]


def sse(*chunks: dict | str) -> bytes:
    """An event stream of ``chunks`` (JSON objects, or raw payload text)."""
    return b"".join(b"data: " + (c if isinstance(c, str) else json.dumps(c)).encode() + b"\n\n"
                    for c in chunks)


def client(proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=proxy.key, max_retries=0)


@pytest.fixture
async def routed(proxy_factory, fake_provider):  # noqa: F811
    """qwen-max on the provider alone; deepseek-reasoner on it, then the pool."""
    doc = provider_config(fake_provider)
    doc["model_routes"] = {"deepseek-reasoner": ["prov:qwen-max", "pool"]}
    proxy = await proxy_factory({**doc, "health": {"enabled": False}})
    proxy.provider = fake_provider
    return proxy


MALFORMED = {
    "delta is text": sse({"choices": [{"index": 0, "delta": "oops"}]}, "[DONE]"),
    "choices is text": sse({"choices": "x"}, "[DONE]"),
    "call is text": sse({"choices": [{"index": 0, "delta": {"tool_calls": ["f"]}}]}, "[DONE]"),
    "finish is an object": sse({"choices": [{"index": 0, "delta": {},
                                             "finish_reason": {"a": 1}}]}, "[DONE]"),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_chunk_is_a_provider_failure_not_an_internal_error(routed, body):
    routed.provider.enqueue(ProviderReply(raw=body))
    with pytest.raises(openai.APIStatusError) as info:
        await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER,
                                                     stream=True)
    assert (info.value.status_code, info.value.code) == (502, "upstream_error")
    assert "malformed" in info.value.message
    # Before any output it is a target that cannot serve: the route moves on.
    routed.provider.enqueue(ProviderReply(raw=body))
    routed.fake.enqueue(Scripted(answer="the pool took over"))
    answer = await client(routed).chat.completions.create(model="deepseek-reasoner",
                                                          messages=USER)
    assert answer.choices[0].message.content == "the pool took over"
    assert routed.core.providers.inflight("prov") == 0


async def test_counts_that_are_not_numbers_give_way_to_our_own(routed):
    routed.provider.enqueue(ProviderReply(raw=sse(
        {"choices": [{"index": 0, "delta": {"content": "counted here"},
                      "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": "n/a", "completion_tokens": "n/a"}},
        "[DONE]")))
    answer = await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert answer.choices[0].message.content == "counted here"
    assert answer.usage.completion_tokens > 0


async def test_an_error_member_that_is_null_is_no_error(routed):
    routed.provider.enqueue(ProviderReply(raw=sse(
        {"choices": [{"index": 0, "delta": {"content": "fine"}, "finish_reason": "stop"}],
         "error": None},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}, "error": None},
        "[DONE]")))
    answer = await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert answer.choices[0].message.content == "fine"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 1)
