"""Structured output through the live server: JSON extracted from fenced or
prose-wrapped replies, checked against the schema, repaired once by asking
again in the same upstream session, and a clear error when that fails too.
Also mobile-number accounts and the request size limit."""

from __future__ import annotations

import json

import aiohttp
import openai
import pydantic
import pytest

from ds2proxy.testing import FakeAccount, Scripted
from ds2proxy.tokens import count_tokens
from ds2proxy.testing.clients import openai_client

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "integer"}},
    "required": ["city", "temp_c"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA}}
USER = [{"role": "user", "content": "Weather in Paris as JSON"}]


@pytest.mark.parametrize("reply", [
    '{"city": "Paris", "temp_c": 18}',
    '```json\n{"city": "Paris", "temp_c": 18}\n```',
    'Here you go:\n\n{"city": "Paris", "temp_c": 18}\n\nAnything else?',
])
@pytest.mark.parametrize("stream", [False, True])
async def test_json_schema_reply_is_bare_valid_json(proxy, reply, stream):
    proxy.fake.enqueue(Scripted(answer=reply))
    c = openai_client(proxy)
    if stream:
        chunks = await c.chat.completions.create(model="deepseek-chat", messages=USER,
                                                 response_format=FORMAT, stream=True)
        text = "".join([ch.choices[0].delta.content or "" async for ch in chunks
                        if ch.choices])
    else:
        resp = await c.chat.completions.create(model="deepseek-chat", messages=USER,
                                               response_format=FORMAT)
        text = resp.choices[0].message.content
    assert json.loads(text) == {"city": "Paris", "temp_c": 18}
    prompt = proxy.fake.calls_to("chat/completion")[0].body["prompt"]
    assert "JSON Schema" in prompt and '"temp_c"' in prompt


async def test_invalid_reply_is_repaired_in_the_same_session(proxy):
    proxy.fake.enqueue(Scripted(answer='{"city": "Paris"}'),
                       Scripted(answer='{"city": "Paris", "temp_c": 18}'))
    resp = await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER,
                                                              response_format=FORMAT)
    assert json.loads(resp.choices[0].message.content)["temp_c"] == 18
    first, second = proxy.fake.calls_to("chat/completion")
    assert second.body["chat_session_id"] == first.body["chat_session_id"]
    assert second.body["parent_message_id"] is not None
    assert "temp_c is required" in second.body["prompt"]
    # Both prompts went upstream, so usage counts both (and both answers).
    assert resp.usage.prompt_tokens == (count_tokens(first.body["prompt"])
                                        + count_tokens(second.body["prompt"]))
    assert resp.usage.completion_tokens == (count_tokens('{"city": "Paris"}')
                                            + count_tokens('{"city": "Paris", "temp_c": 18}'))


async def test_still_invalid_after_repair_is_a_clear_error(proxy):
    proxy.fake.enqueue(Scripted(answer="I would rather not."),
                       Scripted(answer="Still no JSON, sorry."))
    with pytest.raises(openai.APIStatusError) as info:
        await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER,
                                                           response_format={"type": "json_object"})
    # A 4xx: agents retry 5xx for minutes, a 4xx makes a router fall back at once.
    assert info.value.status_code == 422
    assert info.value.body["code"] == "json_output_invalid"
    assert "JSON" in info.value.body["message"]
    assert proxy.core.pool.inflight == 0


LONG_REPLY = '{"city": "' + "Paris " * 40 + '", "temp_c": 18}'


class Weather(pydantic.BaseModel):
    city: str
    temp_c: int


class Step(pydantic.BaseModel):
    n: int


class Plan(pydantic.BaseModel):
    steps: list[Step]


async def test_a_nested_model_is_checked_through_its_ref_and_repaired(proxy):
    """Pydantic puts nested models behind $ref: an answer with a wrong nested
    field passed the check, and the SDK's parse() raised ValidationError."""
    proxy.fake.enqueue(Scripted(answer='{"steps": [{"n": "one"}]}'),
                       Scripted(answer='{"steps": [{"n": 1}]}'))
    resp = await openai_client(proxy).chat.completions.parse(
        model="deepseek-chat", messages=USER, response_format=Plan)
    assert resp.choices[0].message.parsed == Plan(steps=[Step(n=1)])
    first, second = proxy.fake.calls_to("chat/completion")
    assert "$.steps[0].n should be integer" in second.body["prompt"]


async def test_a_max_tokens_cut_answer_is_returned_as_written_not_repaired(proxy):
    """The client's own limit cut the JSON: finish_reason length with the
    text as written (the SDK then raises LengthFinishReasonError), never a
    repair round that the limit leaves empty and a 422."""
    proxy.fake.enqueue(Scripted(answer=LONG_REPLY), Scripted(answer=LONG_REPLY))
    resp = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=USER, response_format=FORMAT, max_tokens=8)
    assert resp.choices[0].finish_reason == "length"
    assert resp.choices[0].message.content.startswith('{"city": "Paris Paris')
    assert resp.usage.completion_tokens == 8
    with pytest.raises(openai.LengthFinishReasonError):
        async with openai_client(proxy).chat.completions.stream(
                model="deepseek-chat", messages=USER, response_format=Weather,
                max_tokens=8) as stream:
            await stream.get_final_completion()
    assert len(proxy.fake.calls_to("chat/completion")) == 2  # one each, no repair
    assert proxy.core.pool.inflight == 0


async def test_a_stop_sequence_cut_answer_is_returned_as_written(proxy):
    proxy.fake.enqueue(Scripted(answer='{"city": "Par', chunk_size=2), Scripted(answer="x"))
    resp = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=USER, response_format={"type": "json_object"},
        stop=["Par"], stream=True)
    chunks = [chunk async for chunk in resp]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == '{"city": "'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert len(proxy.fake.calls_to("chat/completion")) == 1


async def test_mobile_account_logs_in(proxy_factory, fake_upstream):
    fake_upstream.add_account(FakeAccount("pw-phone", mobile="13800138000"))
    proxy = await proxy_factory({"accounts": [{"mobile": "+86 138 0013 8000",
                                               "password": "pw-phone"}]})
    proxy.fake.enqueue(Scripted(answer="hello from a phone account"))
    resp = await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER)
    assert resp.choices[0].message.content == "hello from a phone account"
    login = proxy.fake.calls_to("users/login")[-1].body
    assert login["mobile"] == "13800138000" and login["area_code"] is None
    assert "email" not in login


async def test_body_over_the_limit_is_413_in_each_family_shape(proxy_factory):
    proxy = await proxy_factory({"runtime": {"max_body_bytes": 4096}})
    big = "x" * 8000
    cases = [
        ("/v1/chat/completions", {"model": "deepseek-chat",
                                  "messages": [{"role": "user", "content": big}]}),
        ("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 10,
                          "messages": [{"role": "user", "content": big}]}),
        ("/v1beta/models/gemini-2.5-flash:generateContent",
         {"contents": [{"role": "user", "parts": [{"text": big}]}]}),
    ]
    async with aiohttp.ClientSession() as http:
        bodies = []
        for path, body in cases:
            async with http.post(proxy.url + path, json=body,
                                 headers={**proxy.headers(), "x-api-key": proxy.key}) as resp:
                assert resp.status == 413
                bodies.append(await resp.json())
    assert bodies[0]["error"]["code"] == "request_too_large"
    assert bodies[1]["type"] == "error" and bodies[1]["error"]["type"] == "request_too_large"
    assert bodies[2]["error"]["code"] == 413


async def test_bodies_of_several_megabytes_are_accepted_by_default(proxy):
    proxy.fake.enqueue(Scripted(answer="read it all"))
    history = [{"role": "user", "content": "tool output " * 100_000},
               {"role": "assistant", "content": "noted"}] * 5 + USER
    sdk = openai_client(proxy)
    resp = await sdk.chat.completions.create(model="deepseek-chat", messages=history)
    assert resp.choices[0].message.content == "read it all"
    assert len(proxy.fake.calls_to("chat/completion")[0].body["prompt"]) > 6_000_000


async def test_a_ref_with_a_non_ascii_digit_index_constrains_nothing(proxy):
    """"#/properties/b/anyOf/²" passed str.isdigit() and broke int() while
    the answer was checked: the turn ran, then the client got a 500."""
    schema = {"type": "object", "properties": {
        "a": {"$ref": "#/properties/b/anyOf/\u00b2"},
        "b": {"anyOf": [{"type": "string"}]}}, "required": ["a"]}
    proxy.fake.enqueue(Scripted(answer='{"a": 1}'))
    resp = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=USER, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert json.loads(resp.choices[0].message.content) == {"a": 1}
