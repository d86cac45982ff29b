"""A provider without a json_schema mode (the DeepSeek API answers 400 "This
response_format type is unavailable now"): the request is asked again once
in JSON mode with the schema described in the system message, the provider
is remembered as refusing json_schema, and the answer is still settled
against the schema as every held answer is."""

from __future__ import annotations

import openai
import pytest
from google.genai import types

from ds2proxy.testing.clients import gemini_client, openai_client
from ds2proxy.testing.provider_replies import ProviderReply

from provider_util import PROVIDER_MODEL, fake_provider, provider_config  # noqa: F401

REFUSAL = "This response_format type is unavailable now"
ROUTER = {"type": "object", "properties": {"model_choice": {"type": "string",
                                                            "enum": ["flash", "pro"]}},
          "required": ["model_choice"]}
OPENAI_FORMAT = {"type": "json_schema", "json_schema": {"name": "router", "schema": ROUTER}}
USER = [{"role": "user", "content": "Which model?"}]


@pytest.fixture
async def routed(proxy_factory, fake_provider):  # noqa: F811
    proxy = await proxy_factory(provider_config(fake_provider))
    proxy.provider = fake_provider
    return proxy


def asked_json_mode_with_the_schema(sent: dict) -> bool:
    system = sent["messages"][0]
    return (sent["response_format"] == {"type": "json_object"} and system["role"] == "system"
            and "model_choice" in system["content"] and "JSON" in system["content"])


async def test_a_gemini_schema_refused_is_asked_again_in_json_mode_and_remembered(routed):
    """The Gemini client saw a 400 "provider rejected"; now the provider is
    asked again in JSON mode, its fenced answer is settled to the schema,
    and the next request (OpenAI's json_schema) goes straight to JSON mode."""
    routed.provider.enqueue(ProviderReply(status=400, error_message=REFUSAL),
                            ProviderReply(text='```json\n{"model_choice": "pro"}\n```'))
    config = types.GenerateContentConfig(response_mime_type="application/json",
                                         response_json_schema=ROUTER)
    response = await gemini_client(routed).aio.models.generate_content(
        model=PROVIDER_MODEL, contents="Which model?", config=config)
    assert response.text == '{"model_choice":"pro"}'
    refused, retried = routed.provider.chat_requests()
    assert refused["response_format"]["type"] == "json_schema"
    assert asked_json_mode_with_the_schema(retried)
    # Remembered; and an answer outside the schema is still asked again.
    routed.provider.enqueue(ProviderReply(text='{"model_choice": "ultra"}'),
                            ProviderReply(text='{"model_choice": "flash"}'))
    answer = await openai_client(routed).chat.completions.create(
        model=PROVIDER_MODEL, messages=USER, response_format=OPENAI_FORMAT)
    assert answer.choices[0].message.content == '{"model_choice":"flash"}'
    later = routed.provider.chat_requests()[2:]
    assert len(later) == 2 and all(asked_json_mode_with_the_schema(s) for s in later)
    assert routed.core.providers.inflight("prov") == 0


async def test_an_openai_stream_with_a_schema_refused_is_served_in_json_mode(routed):
    routed.provider.enqueue(ProviderReply(status=400, error_message=REFUSAL),
                            ProviderReply(text='Here: {"model_choice": "flash"}'))
    stream = await openai_client(routed).chat.completions.create(
        model=PROVIDER_MODEL, messages=USER, response_format=OPENAI_FORMAT, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == '{"model_choice":"flash"}'
    refused, retried = routed.provider.chat_requests()
    assert refused["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "router", "schema": ROUTER}}
    assert asked_json_mode_with_the_schema(retried)


@pytest.mark.parametrize("message", [
    REFUSAL,  # JSON mode refused as well: asked once more only
    "Invalid schema for response_format 'router': 'additionalProperties' is required",
    "messages: at least one message is required"])
async def test_other_refusals_reach_the_client_after_at_most_one_retry(routed, message):
    """A 400 about the schema itself, or about something else, is the
    request's own fault; only a refused json_schema mode is asked again."""
    routed.provider.enqueue(ProviderReply(status=400, error_message=message),
                            ProviderReply(status=400, error_message=message))
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(routed).chat.completions.create(
            model=PROVIDER_MODEL, messages=USER, response_format=OPENAI_FORMAT)
    assert info.value.code == "provider_rejected" and message in info.value.message
    sent = routed.provider.chat_requests()
    assert len(sent) == (2 if message == REFUSAL else 1)
    assert routed.core.providers.client("prov").refuses_json_schema is (message == REFUSAL)
    assert routed.core.providers.inflight("prov") == 0


async def test_a_limit_field_and_a_schema_refused_in_turn_are_both_refitted(routed):
    """Each refusal is asked again once: the limit under its other name,
    then JSON mode; the answer still comes back settled."""
    routed.provider.refused_fields = {"max_tokens": "Unsupported parameter: 'max_tokens' is "
                                      "not supported. Use 'max_completion_tokens' instead."}
    routed.provider.enqueue(ProviderReply(status=400, error_message=REFUSAL),
                            ProviderReply(text='{"model_choice": "pro"}'))
    answer = await openai_client(routed).chat.completions.create(
        model=PROVIDER_MODEL, messages=USER, response_format=OPENAI_FORMAT, max_tokens=50)
    assert answer.choices[0].message.content == '{"model_choice":"pro"}'
    limit, schema, served = routed.provider.chat_requests()
    assert "max_tokens" in limit and schema["max_completion_tokens"] == 50
    assert schema["response_format"]["type"] == "json_schema"
    assert asked_json_mode_with_the_schema(served) and served["max_completion_tokens"] == 50
