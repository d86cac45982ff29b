"""A provider model through every API family, with the official clients:
listed with its provider, answered by the provider (reasoning split, native
tool calls, the provider's usage), and the served target named."""

from __future__ import annotations

import json
import logging

import aiohttp
import anthropic
import ollama
import openai
import pytest
from google import genai
from google.genai import types

from ds2proxy.testing.provider_replies import ProviderReply

from provider_util import PROVIDER_KEY, PROVIDER_MODEL, fake_provider, provider_config  # noqa: F401

USER = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture
async def routed(proxy_factory, fake_provider):  # noqa: F811
    proxy = await proxy_factory(provider_config(fake_provider))
    proxy.provider = fake_provider
    return proxy


def oai(proxy, prefix: str = "/v1") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + prefix, api_key=proxy.key, max_retries=0)


async def test_openai_chat_streams_reasoning_text_and_provider_usage(routed):
    routed.provider.enqueue(ProviderReply(text="Hello there", reasoning="thinking hard",
                                          usage=(21, 8)))
    raw = await oai(routed).chat.completions.with_raw_response.create(
        model=PROVIDER_MODEL, messages=USER, stream=True, stream_options={"include_usage": True})
    assert raw.headers["X-DS2Proxy-Served-By"] == f"prov:{PROVIDER_MODEL}"
    text, reasoning, usage = [], [], None
    async for chunk in raw.parse():
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            reasoning.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
    assert ("".join(text), "".join(reasoning)) == ("Hello there", "thinking hard")
    assert (usage.prompt_tokens, usage.completion_tokens) == (21, 8)
    sent = routed.provider.chat_requests()[0]
    assert sent["model"] == PROVIDER_MODEL and sent["messages"] == USER and sent["stream"]
    assert routed.provider.calls[0].headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert routed.fake.calls_to("chat/completion") == []


async def test_openai_tools_round_trip_natively(routed):
    routed.provider.enqueue(ProviderReply(tool_calls=[("get_weather", '{"city": "Paris"}')]),
                            ProviderReply(text="It is sunny."))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
    first = await oai(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER,
                                                      tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather",
                                                                          {"city": "Paris"})
    history = [*USER, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = await oai(routed).chat.completions.create(model=PROVIDER_MODEL, messages=history,
                                                       tools=tools)
    assert second.choices[0].message.content == "It is sunny."
    sent = routed.provider.chat_requests()
    assert sent[0]["tools"][0]["function"]["name"] == "get_weather"
    assert sent[0]["tool_choice"] == "auto"
    assert "DSML" not in json.dumps(sent) and "get_weather" not in json.dumps(sent[0]["messages"])
    assert sent[1]["messages"][1]["tool_calls"][0]["id"] == call.id
    assert sent[1]["messages"][2] == {"role": "tool", "tool_call_id": call.id,
                                      "content": "sunny"}


async def test_responses_api(routed):
    routed.provider.enqueue(ProviderReply(text="From responses", reasoning="r"))
    response = await oai(routed).responses.create(model=PROVIDER_MODEL, input="hi")
    assert response.output_text == "From responses"


async def test_claude_messages_stream_with_thinking(routed):
    routed.provider.enqueue(ProviderReply(text="Claude says hi", reasoning="pondering"))
    client = anthropic.AsyncAnthropic(base_url=routed.url + "/anthropic", api_key=routed.key,
                                      max_retries=0)
    async with client.messages.stream(model=PROVIDER_MODEL, max_tokens=100,
                                      messages=USER) as stream:
        message = await stream.get_final_message()
    blocks = {b.type: b for b in message.content}
    assert blocks["thinking"].thinking == "pondering" and blocks["text"].text == "Claude says hi"
    assert routed.provider.chat_requests()[0]["max_tokens"] == 100


async def test_claude_tool_use(routed):
    routed.provider.enqueue(ProviderReply(tool_calls=[("get_weather", '{"city": "Oslo"}')]))
    client = anthropic.AsyncAnthropic(base_url=routed.url + "/anthropic", api_key=routed.key,
                                      max_retries=0)
    message = await client.messages.create(
        model=PROVIDER_MODEL, max_tokens=100, messages=USER,
        tools=[{"name": "get_weather", "input_schema": WEATHER}])
    (use,) = [b for b in message.content if b.type == "tool_use"]
    assert (use.name, use.input, message.stop_reason) == ("get_weather", {"city": "Oslo"},
                                                          "tool_use")


async def test_gemini(routed):
    routed.provider.enqueue(ProviderReply(text="Gemini via provider", reasoning="hm"))
    client = genai.Client(api_key=routed.key, http_options=types.HttpOptions(
        base_url=routed.url, api_version="v1beta"))
    response = await client.aio.models.generate_content(
        model=PROVIDER_MODEL, contents="hi", config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(include_thoughts=True)))
    parts = response.candidates[0].content.parts
    assert [p.text for p in parts if not p.thought] == ["Gemini via provider"]
    assert [p.text for p in parts if p.thought] == ["hm"]
    listed = [m.name async for m in await client.aio.models.list()]
    assert f"models/{PROVIDER_MODEL}" in listed


async def test_ollama(routed):
    routed.provider.enqueue(ProviderReply(text="Ollama via provider", reasoning="t"))
    client = ollama.AsyncClient(host=routed.url, headers=routed.headers())
    response = await client.chat(model=PROVIDER_MODEL, messages=USER, think=True)
    assert response.message.content == "Ollama via provider"
    assert response.message.thinking == "t"
    tags = {m.model: m.details.family for m in (await client.list()).models}
    assert tags[PROVIDER_MODEL] == "prov"


async def test_thinking_turned_off_drops_the_providers_reasoning(routed):
    routed.provider.enqueue(ProviderReply(text="plain", reasoning="hidden"))
    client = ollama.AsyncClient(host=routed.url, headers=routed.headers())
    response = await client.chat(model=PROVIDER_MODEL, messages=USER, think=False)
    assert (response.message.content, response.message.thinking) == ("plain", None)


@pytest.mark.parametrize("prefix", ["/api/v1", "/lm/v2"])
async def test_seed_surfaces(routed, prefix):
    routed.provider.enqueue(ProviderReply(text=f"hi from {prefix}"))
    response = await oai(routed, prefix).chat.completions.create(model=PROVIDER_MODEL,
                                                                 messages=USER)
    assert f"hi from {prefix}" in response.choices[0].message.content


async def test_model_lists_flag_the_provider(routed):
    client = oai(routed)
    models = {m.id: m.owned_by for m in (await client.models.list()).data}
    assert models[PROVIDER_MODEL] == "prov" and models["deepseek-chat"] == "deepseek"
    assert (await client.models.retrieve("qwen-turbo")).owned_by == "prov"
    claude = anthropic.AsyncAnthropic(base_url=routed.url + "/anthropic", api_key=routed.key)
    page = await claude.models.list(limit=1000)
    assert any(m.id == PROVIDER_MODEL and "prov" in m.display_name for m in page.data)
    degpt = {m.id: m.owned_by for m in (await oai(routed, "/api/v1").models.list()).data}
    assert degpt[PROVIDER_MODEL] == "prov"


async def test_a_glob_model_goes_to_the_provider_under_its_own_name(routed):
    await oai(routed).chat.completions.create(model="qwen-turbo", messages=USER)
    assert routed.provider.chat_requests()[0]["model"] == "qwen-turbo"


async def test_pass_through_tokens_cannot_spend_the_provider(routed):
    client = openai.AsyncOpenAI(base_url=routed.url + "/v1", api_key="some-raw-token",
                                max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert "provider" in info.value.message and routed.provider.calls == []


async def test_the_usage_record_and_log_name_the_target(routed, caplog):
    routed.provider.enqueue(ProviderReply(text="ok", usage=(5, 3)))
    with caplog.at_level(logging.INFO, logger="ds2proxy.requests"):
        await oai(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert f"served_by=prov:{PROVIDER_MODEL}" in caplog.text
    store = routed.core.usage.store
    await store.flush()
    rows, _ = await store.requests({}, 10, 0)
    row = next(r for r in rows if r["route"] == "/v1/chat/completions")
    assert row["served_by"] == f"prov:{PROVIDER_MODEL}" and row["account"] == "provider:prov"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (5, 3)


async def test_provider_metrics(routed):
    await oai(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    async with aiohttp.ClientSession() as http:
        async with http.get(routed.url + "/metrics",
                            headers={"Authorization": f"Bearer {routed.admin_key}"}) as resp:
            text = await resp.text()
    assert 'ds2proxy_provider_requests_total{outcome="ok",provider="prov"} 1.0' in text
    assert 'ds2proxy_provider_inflight{provider="prov"} 0.0' in text
    assert PROVIDER_KEY not in text


async def test_gemini_and_ollama_and_responses_get_native_calls(routed):
    routed.provider.enqueue(*[ProviderReply(tool_calls=[("get_weather", '{"city": "Lima"}')])
                              for _ in range(3)])
    gemini = genai.Client(api_key=routed.key, http_options=types.HttpOptions(
        base_url=routed.url, api_version="v1beta"))
    declaration = types.FunctionDeclaration(name="get_weather", parameters_json_schema=WEATHER)
    response = await gemini.aio.models.generate_content(
        model=PROVIDER_MODEL, contents="weather?", config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[declaration])],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)))
    (call,) = response.function_calls
    assert (call.name, call.args) == ("get_weather", {"city": "Lima"})
    local = ollama.AsyncClient(host=routed.url, headers=routed.headers())
    reply = await local.chat(model=PROVIDER_MODEL, messages=USER, tools=[
        {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}])
    (used,) = reply.message.tool_calls
    assert (used.function.name, dict(used.function.arguments)) == ("get_weather",
                                                                   {"city": "Lima"})
    result = await oai(routed).responses.create(model=PROVIDER_MODEL, input="weather?", tools=[
        {"type": "function", "name": "get_weather", "parameters": WEATHER}])
    (item,) = [i for i in result.output if i.type == "function_call"]
    assert (item.name, json.loads(item.arguments)) == ("get_weather", {"city": "Lima"})
    sent = routed.provider.chat_requests()
    assert all(body["tools"][0]["function"]["name"] == "get_weather" for body in sent)


OPENAI_REFUSAL = ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                  "Use 'max_completion_tokens' instead.")


async def test_a_provider_that_refuses_max_tokens_gets_max_completion_tokens(routed):
    """OpenAI's reasoning models refuse ``max_tokens``: every limited request
    to them was a 400. Now the request goes again once under
    ``max_completion_tokens``, and later ones go under it at once."""
    routed.provider.refused_fields["max_tokens"] = OPENAI_REFUSAL
    for _ in range(2):
        answer = await oai(routed).chat.completions.create(
            model=PROVIDER_MODEL, messages=USER, max_completion_tokens=50)
        assert answer.choices[0].message.content == "Hello from the provider."
    sent = [(("max_tokens" in body), body.get("max_completion_tokens"))
            for body in routed.provider.chat_requests()]
    assert sent == [(True, None), (False, 50), (False, 50)]
    claude = anthropic.AsyncAnthropic(base_url=routed.url, api_key=routed.key, max_retries=0)
    message = await claude.messages.create(model=PROVIDER_MODEL, max_tokens=64, messages=USER)
    assert message.content[0].text == "Hello from the provider."
    assert routed.provider.chat_requests()[-1]["max_completion_tokens"] == 64


async def test_a_range_error_on_max_tokens_is_not_a_rename(routed):
    """A 400 about the limit's value is the request's own fault: passed on."""
    routed.provider.refused_fields["max_tokens"] = "max_tokens must be at most 8192"
    with pytest.raises(openai.BadRequestError) as info:
        await oai(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER,
                                                  max_tokens=99999)
    assert "at most 8192" in info.value.message
    assert len(routed.provider.chat_requests()) == 1


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_the_limit_field_can_be_configured(proxy_factory, fake_provider, field):  # noqa: F811
    proxy = await proxy_factory(provider_config(fake_provider, max_tokens_field=field))
    await oai(proxy).chat.completions.create(model=PROVIDER_MODEL, messages=USER, max_tokens=7)
    sent = fake_provider.chat_requests()[0]
    assert sent[field] == 7 and len({"max_tokens", "max_completion_tokens"} & set(sent)) == 1
