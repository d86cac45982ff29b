"""Gemini and Ollama requests answered by an OpenAI-compatible provider,
with the official clients: structured answers are held and settled as on
the pool's path: ``text/x.enum`` to one of the values (the chat API has no
enum mode), JSON mode to the checked JSON (a provider may ignore
``response_format`` or fence its answer), asked again once; and JSON mode
says "JSON" in the prompt, which OpenAI's json_object demands."""

from __future__ import annotations

import json

import ollama
import pytest
from google.genai import errors, types

from ds2proxy.testing.clients import gemini_client
from ds2proxy_plugins.gemini.schema import json_schema
from ds2proxy.testing.provider_replies import ProviderReply

from provider_util import PROVIDER_MODEL, fake_provider, provider_config  # noqa: F401

INSTRUMENTS = ["Percussion", "String", "Woodwind"]


@pytest.fixture
async def routed(proxy_factory, fake_provider):  # noqa: F811
    proxy = await proxy_factory(provider_config(fake_provider))
    proxy.provider = fake_provider
    return proxy


def enum_config(**extra) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        response_mime_type="text/x.enum",
        response_schema={"type": "STRING", "enum": INSTRUMENTS}, **extra)


async def ask(proxy, config: types.GenerateContentConfig, stream: bool
              ) -> tuple[str, types.GenerateContentResponseUsageMetadata | None]:
    """(the answer's text, the last usage metadata) of one call."""
    models = gemini_client(proxy).aio.models
    request = dict(model=PROVIDER_MODEL, contents="What kind of instrument is a drum?",
                   config=config)
    if not stream:
        response = await models.generate_content(**request)
        return response.text or "", response.usage_metadata
    chunks = [c async for c in await models.generate_content_stream(**request)]
    return "".join(c.text or "" for c in chunks), chunks[-1].usage_metadata


@pytest.mark.parametrize("stream", [False, True])
async def test_an_enum_answer_from_a_provider_is_one_of_the_values(routed, stream):
    """The provider's answer went out as written ("I think it is
    percussion.") and it was never told the values: they are now asked for
    in the system message and the answer read back to the one it names."""
    routed.provider.enqueue(ProviderReply(text="I think it is percussion.", usage=(30, 6)))
    config = enum_config(system_instruction="You know music.")
    text, usage = await ask(routed, config, stream)
    assert text == "Percussion"
    assert (usage.prompt_token_count, usage.candidates_token_count) == (30, 6)
    (sent,) = routed.provider.chat_requests()
    system = sent["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("You know music.")
    assert '["Percussion","String","Woodwind"]' in system["content"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert "response_format" not in sent


@pytest.mark.parametrize("stream", [False, True])
async def test_a_provider_answer_naming_two_values_is_asked_again_once(routed, stream):
    routed.provider.enqueue(ProviderReply(text="String or Woodwind", usage=(30, 4)),
                            ProviderReply(text="Percussion", usage=(40, 2)))
    text, usage = await ask(routed, enum_config(), stream)
    assert text == "Percussion"
    # Both answers were asked for and spent: the usage counts them both.
    assert (usage.prompt_token_count, usage.candidates_token_count) == (70, 6)
    first, second = routed.provider.chat_requests()
    assert second["messages"][:-2] == first["messages"]
    assert second["messages"][-2] == {"role": "assistant", "content": "String or Woodwind"}
    repair = second["messages"][-1]
    assert repair["role"] == "user" and "more than one" in repair["content"]
    assert routed.core.providers.inflight("prov") == 0


async def test_a_provider_answer_that_stays_unusable_is_a_clear_error(routed):
    routed.provider.enqueue(ProviderReply(text="A drum is a drum."),
                            ProviderReply(text="Still a drum."))
    with pytest.raises(errors.APIError) as info:
        await ask(routed, enum_config(), stream=False)
    assert info.value.code == 422 and "allowed values" in info.value.message
    assert len(routed.provider.chat_requests()) == 2
    assert routed.core.providers.inflight("prov") == 0


async def test_an_enum_answer_cut_by_its_limit_goes_out_as_written(routed):
    """A truncated structured answer is not repaired, as the official APIs
    return one (and as the pool's path does)."""
    routed.provider.enqueue(ProviderReply(text="It is a perc", finish_reason="length"))
    response = await gemini_client(routed).aio.models.generate_content(
        model=PROVIDER_MODEL, contents="drum?", config=enum_config(max_output_tokens=3))
    assert response.text == "It is a perc"
    assert response.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert len(routed.provider.chat_requests()) == 1


async def test_json_mode_without_the_word_json_is_asked_for_in_the_prompt(routed):
    """Gemini's application/json and Ollama's format "json" went to the
    provider as json_object with nothing saying JSON: OpenAI refuses that
    ("'messages' must contain the word 'json'") and other servers may
    stream blanks to the limit. A system message now asks for it; a
    conversation that says JSON itself is sent as it is."""
    routed.provider.enqueue(*(ProviderReply(text='{"colours": ["red"]}') for _ in range(3)))
    gemini = await gemini_client(routed).aio.models.generate_content(
        model=PROVIDER_MODEL, contents="Name a colour.",
        config=types.GenerateContentConfig(response_mime_type="application/json"))
    local = ollama.AsyncClient(host=routed.url, headers=routed.headers())
    chat = await local.chat(model=PROVIDER_MODEL, format="json",
                            messages=[{"role": "user", "content": "Name a colour."}])
    said = await local.chat(model=PROVIDER_MODEL, format="json",
                            messages=[{"role": "user", "content": "A colour, as JSON."}])
    assert json.loads(gemini.text) == json.loads(chat.message.content) == {"colours": ["red"]}
    assert said.message.content == '{"colours":["red"]}'  # settled: compact
    first, second, third = routed.provider.chat_requests()
    for sent in (first, second):
        assert sent["response_format"] == {"type": "json_object"}
        assert sent["messages"][0]["role"] == "system"
        assert "JSON" in sent["messages"][0]["content"]
    assert third["messages"] == [{"role": "user", "content": "A colour, as JSON."}]


ROUTER = {"type": "OBJECT", "properties": {"model_choice": {"type": "STRING",
                                                            "enum": ["flash", "pro"]}},
          "required": ["model_choice"]}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_fenced_or_prosy_json_answer_from_a_provider_is_settled(routed, stream):
    """A provider that ignores response_format (many local servers do)
    answered in a fence with prose around it, and the text went out as
    written: Gemini CLI's router cannot parse it and retries for ~35 s. It
    is now extracted, checked against the schema and sent compactly."""
    routed.provider.enqueue(ProviderReply(
        text='Sure!\n```json\n{"model_choice": "pro"}\n```\nHope that helps.'))
    config = types.GenerateContentConfig(response_mime_type="application/json",
                                         response_json_schema=ROUTER)
    text, _ = await ask(routed, config, stream)
    assert text == '{"model_choice":"pro"}'
    (sent,) = routed.provider.chat_requests()
    assert sent["response_format"]["type"] == "json_schema"


async def test_a_provider_json_answer_that_fails_the_schema_is_asked_again(routed):
    routed.provider.enqueue(ProviderReply(text='{"model_choice": "ultra"}'),
                            ProviderReply(text='{"model_choice": "flash"}'))
    local = ollama.AsyncClient(host=routed.url, headers=routed.headers())
    answer = await local.chat(model=PROVIDER_MODEL, format=json_schema(ROUTER), messages=[
        {"role": "user", "content": "Which model, as JSON?"}])
    assert answer.message.content == '{"model_choice":"flash"}'
    first, second = routed.provider.chat_requests()
    assert second["messages"][-2] == {"role": "assistant",
                                      "content": '{"model_choice": "ultra"}'}
    assert "model_choice" in second["messages"][-1]["content"]
    routed.provider.enqueue(ProviderReply(text="no JSON here"), ProviderReply(text="nor here"))
    with pytest.raises(ollama.ResponseError) as info:
        await local.chat(model=PROVIDER_MODEL, format="json", messages=[
            {"role": "user", "content": "JSON please"}])
    assert info.value.status_code == 422 and "requested JSON" in info.value.error
    assert routed.core.providers.inflight("prov") == 0
