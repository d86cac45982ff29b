"""The ``/api/v1`` web-chat proxy surface through the official clients: the
model list's metadata, chat completions with ``"model": "auto"``
(``openai``), and Messages (``anthropic``). The wire format, recordings and
the thinking switch are pinned in ``test_degpt_lm_wire``."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import anthropic
import openai
import pytest

from ds2proxy.testing import Scripted
from ds2proxy.testing.clients import anthropic_client, openai_client

USER = [{"role": "user", "content": "hello"}]
MODEL_KEYS = {"id", "object", "model", "created", "owned_by", "name", "description",
              "support", "tip"}
LIST_KEYS = {"object", "data", "version", "provider", "name", "default_locale", "status",
             "time"}


async def get_models(proxy) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/api/v1/models") as resp:
            assert resp.status == 200
            return await resp.json()


# -- models ---------------------------------------------------------------------------


async def test_model_list_carries_the_rich_metadata(proxy):
    body = await get_models(proxy)
    assert set(body) == LIST_KEYS
    assert body["object"] == "list" and body["status"] is True and body["version"]
    assert isinstance(body["time"], int) and len(str(body["time"])) == 8  # yyyymmdd
    natives = {m.id: m for m in proxy.core.models.natives()}
    ids = [m["id"] for m in body["data"]]
    assert ids[:len(natives)] == list(natives)
    # The surface's OpenAI / Claude / Gemini names, each one servable; its
    # other vendors' models are not DeepSeek's and are not listed.
    assert {"gpt-4o", "o3", "claude-opus-4-20250514", "gemini-2.5-pro"} <= set(ids)
    assert not any(i.startswith(("doubao", "qwen", "grok")) for i in ids)
    for entry in body["data"]:
        assert set(entry) == MODEL_KEYS
        assert entry["object"] == "model" and entry["model"] == entry["id"]
        assert entry["created"] > 10**12  # milliseconds
        assert entry["name"] and entry["tip"] == entry["name"] and entry["description"]
        native = natives[proxy.core.resolve_model(entry["id"], family="openai").native]
        assert entry["support"] == ("image" if native.model_type == "vision" else "text")
        if entry["id"] not in natives:
            assert native.id in entry["description"]


@pytest.mark.parametrize("model", ["doubao-seed-1-6-250615", "qwen3-235b-a22b", "grok-4-0709"])
async def test_other_vendors_are_model_not_found(proxy, model):
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy, "/api/v1").chat.completions.create(model=model, messages=USER)
    assert info.value.body["code"] == "model_not_found"
    assert proxy.fake.calls_to("chat/completion") == []


async def test_listed_vendor_name_is_served_and_ids_follow_the_surface(proxy):
    proxy.fake.enqueue(Scripted(answer="Hi."), Scripted(answer="Hello."))
    sdk = openai_client(proxy, "/api/v1")
    resp = await sdk.chat.completions.create(model="gpt-4o", messages=USER)
    assert resp.choices[0].message.content == "Hi." and resp.model == "gpt-4o"
    assert re.fullmatch(r"chatcmpl-[a-z]{4}[0-9]{6}", resp.id)
    assert set(resp.usage.model_dump(exclude_none=True)) == {
        "prompt_tokens", "completion_tokens", "total_tokens"}
    message = await anthropic_client(proxy, "/api").messages.create(
        model="claude-opus-4-20250514", max_tokens=100, messages=USER)
    assert re.fullmatch(r"chatcmpl-[a-z]{4}[0-9]{6}", message.id)


async def test_model_list_identity_comes_from_plugin_settings(proxy_factory):
    proxy = await proxy_factory({"plugins": {"degpt": {"provider": "Acme", "name": "Acme GPT",
                                                       "default_locale": "zh-CN"}}})
    body = await get_models(proxy)
    assert (body["provider"], body["name"], body["default_locale"]) == (
        "Acme", "Acme GPT", "zh-CN")


# -- chat completions -----------------------------------------------------------------


async def test_auto_picks_the_default_model_and_names_it(proxy):
    proxy.fake.enqueue(Scripted(answer="I am DeepSeek."))
    sdk = openai_client(proxy, "/api/v1")
    resp = await sdk.chat.completions.create(model="auto", messages=USER)
    assert resp.model == proxy.core.config.models.default
    assert resp.choices[0].message.content == "I am DeepSeek."
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


async def test_auto_follows_the_configured_default(proxy_factory):
    proxy = await proxy_factory({"models": {"default": "deepseek-reasoner"}})
    proxy.fake.enqueue(Scripted(thinking="hmm", answer="ok"))
    sdk = openai_client(proxy, "/api/v1")
    stream = await sdk.chat.completions.create(model="auto", messages=USER,
                                               stream=True)
    chunks = [chunk async for chunk in stream]
    assert {c.model for c in chunks} == {"deepseek-reasoner"}
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                        for c in chunks)
    assert reasoning == "hmm"
    assert proxy.fake.calls_to("chat/completion")[-1].body["thinking_enabled"] is True


async def test_sync_client_stream_logprobs_and_finish(proxy):
    sync = openai_client(proxy, "/api/v1", sync=True)
    proxy.fake.enqueue(Scripted(answer="  spaced\n\ntext  "))

    def run() -> list:
        return list(sync.chat.completions.create(model="gpt-4o", messages=USER, stream=True))

    chunks = await asyncio.to_thread(run)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "  spaced\n\ntext  "
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert all("logprobs" in c.choices[0].model_fields_set and c.choices[0].logprobs is None
               for c in chunks)
    assert {c.model for c in chunks} == {"gpt-4o"}


# -- messages -------------------------------------------------------------------------


async def test_messages_non_stream_with_thinking(proxy):
    proxy.fake.enqueue(Scripted(thinking="Who am I?", answer="I am Claude."))
    message = await anthropic_client(proxy, "/api").messages.create(
        model="claude-opus-4-6", max_tokens=1000, messages=USER)
    assert message.model == "claude-opus-4-6"
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert (message.content[0].thinking, message.content[1].text) == ("Who am I?",
                                                                      "I am Claude.")
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0


async def test_messages_stream_with_auto_model(proxy):
    proxy.fake.enqueue(Scripted(answer="Hello from the default model."))
    async with anthropic_client(proxy, "/api").messages.stream(
            model="auto", max_tokens=100, messages=USER) as events:
        text = "".join([t async for t in events.text_stream])
        final = await events.get_final_message()
    assert text == "Hello from the default model."
    assert final.model == proxy.core.config.models.default
    assert final.stop_reason == "end_turn"


async def test_messages_count_tokens_predicts_the_turn(proxy):
    """An Anthropic client on this surface counts tokens as on /anthropic
    (its count_tokens was a 404 in the OpenAI shape), ``auto`` included."""
    client = anthropic_client(proxy, "/api")
    counted = await client.messages.count_tokens(model="auto", messages=USER,
                                                 system="Answer in French.")
    proxy.fake.enqueue(Scripted(answer="Bonjour."))
    message = await client.messages.create(model="auto", max_tokens=100, messages=USER,
                                           system="Answer in French.")
    assert counted.input_tokens == message.usage.input_tokens > 0
    elsewhere = await anthropic_client(proxy, "/anthropic").messages.count_tokens(
        model=proxy.core.config.models.default, messages=USER, system="Answer in French.")
    assert elsewhere.input_tokens == counted.input_tokens


async def test_messages_bad_key_is_an_anthropic_401(proxy_factory):
    proxy = await proxy_factory({"auth": {"allow_passthrough": False}})
    with pytest.raises(anthropic.AuthenticationError) as info:
        await anthropic_client(proxy, "/api", key="wrong").messages.create(
            model="claude-opus-4-6", max_tokens=10, messages=USER)
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "authentication_error"


async def test_configured_aliases_are_listed_with_their_model(proxy_factory):
    proxy = await proxy_factory({"model_aliases": {"my-bot": "deepseek-reasoner"}})
    entries = {m["id"]: m for m in (await get_models(proxy))["data"]}
    assert "deepseek-reasoner" in entries["my-bot"]["description"]
    assert entries["my-bot"]["name"].startswith("my-bot")
