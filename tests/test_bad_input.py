"""Reproductions of bad input that once reached a 500, or the upstream: each
is now a 400 in the family's own shape naming the field, answered before any
account, session or proof-of-work is spent, with no client value quoted
back. The property-based sweep over every route is ``test_fuzz_api``."""

from __future__ import annotations

import json

import pytest

from ds2proxy.jsonbody import MAX_DEPTH, deeper_than
from ds2proxy.testing.clients import Reply
from ds2proxy.testing.clients import post as raw_post

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
GEMINI = "/v1beta/models/gemini-2.5-pro:generateContent"
USER = [{"role": "user", "content": "hi"}]
OPENAI_BODY = {"model": "deepseek-chat", "messages": USER}
CLAUDE_BODY = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": USER}
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


async def post(proxy, path: str, body: dict | str) -> Reply:
    """With the managed key in every family's header."""
    headers = {"x-goog-api-key": proxy.key, **proxy.headers()}
    return await raw_post(proxy.url + path, body, headers)


def nothing_spent(proxy) -> None:
    """No login, session, PoW or completion reached the upstream; no lease held."""
    assert [c.path for c in proxy.fake.calls] == []
    assert proxy.core.pool.inflight == 0


def openai_param(status: int, body: dict, param: str) -> str:
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param and param in body["error"]["message"]
    return body["error"]["message"]


@pytest.mark.parametrize("field, value", [
    ("temperature", "hot"), ("temperature", -50), ("temperature", 1e308), ("top_p", 3),
    ("stop", {"x": 1}), ("stop", ["a", "b", "c", "d", "e"]), ("presence_penalty", "x"),
    ("n", 2), ("seed", 1.5), ("stream", "yes"), ("max_tokens", 1e308), ("user", []),
])
async def test_openai_sampling_fields_are_checked_before_any_upstream_work(proxy, field, value):
    answer = await post(proxy, CHAT, {**OPENAI_BODY, field: value})
    message = openai_param(answer.status, answer.json(), field)
    if isinstance(value, str | dict):
        assert json.dumps(value) not in message and repr(value) not in message
    nothing_spent(proxy)


async def test_sampling_nested_255_deep_is_a_400_before_any_upstream_work(proxy):
    for field in ("temperature", "top_p", "stop"):
        raw = json.dumps(OPENAI_BODY)[:-1] + f', "{field}": {nested(255)}}}'
        answer = await post(proxy, CHAT, raw)
        assert answer.status == 400 and "nests deeper" in answer.json()["error"]["message"]
    nothing_spent(proxy)


async def test_validated_values_are_what_goes_upstream(proxy):
    answer = await post(proxy, CHAT, {**OPENAI_BODY, "temperature": 1, "top_p": 0,
                                      "stop": "END", "presence_penalty": -2})
    assert answer.status == 200
    sent = proxy.fake.calls_to("chat/completion")[-1].body
    assert (sent["temperature"], sent["top_p"], sent["stop"], sent["presence_penalty"]) == (
        1.0, 0.0, ["END"], -2.0)
    assert all(type(sent[k]) is float for k in ("temperature", "top_p", "presence_penalty"))


@pytest.mark.parametrize("field, value", [
    ("temperature", 1.5), ("top_k", -1), ("top_p", "x"), ("stop_sequences", {"x": 1}),
    ("stream", 1), ("max_tokens", 0), ("metadata", "m"),
])
async def test_anthropic_fields_are_invalid_request_errors(proxy, field, value):
    for path in (MESSAGES, MESSAGES + "/count_tokens", "/api/v1/messages"):
        answer = await post(proxy, path, {**CLAUDE_BODY, field: value})
        assert answer.status == 400 and answer.json()["type"] == "error"
        assert answer.json()["error"]["type"] == "invalid_request_error"
        assert field in answer.json()["error"]["message"]
    nothing_spent(proxy)


@pytest.mark.parametrize("field, value", [
    ("temperature", 2.5), ("topP", -1), ("topK", "many"), ("maxOutputTokens", 0),
    ("stopSequences", ["1", "2", "3", "4", "5", "6"]), ("candidateCount", 3),
    ("presencePenalty", 2), ("thinkingConfig", {"includeThoughts": "yes"}),
])
async def test_gemini_generation_config_is_invalid_argument(proxy, field, value):
    answer = await post(proxy, GEMINI, {**GEMINI_BODY, "generationConfig": {field: value}})
    assert answer.status == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert f"generationConfig.{field}" in answer.json()["error"]["message"]
    nothing_spent(proxy)


async def test_deeply_nested_unknown_claude_block_is_redacted_not_a_500(proxy):
    """Inside the depth bound the block reaches the prompt as redacted JSON;
    beyond it, a 400 before work (it used to crash the redaction)."""
    block = f'{{"type": "mystery", "payload": {nested(MAX_DEPTH - 6)}}}'
    accepted = json.dumps(CLAUDE_BODY).replace('"content": "hi"', f'"content": [{block}]')
    answer = await post(proxy, MESSAGES, accepted)
    assert answer.status == 200 and "mystery" in proxy.fake.calls_to("chat/completion")[-1].body[
        "prompt"]
    deep = accepted.replace(nested(MAX_DEPTH - 6), nested(300))
    answer = await post(proxy, MESSAGES, deep)
    assert answer.status == 400 and answer.json()["error"]["type"] == "invalid_request_error"
    assert proxy.core.pool.inflight == 0


async def test_deeply_nested_unknown_gemini_part_is_not_a_500(proxy):
    part = f'{{"executableCode": {{"code": {nested(MAX_DEPTH - 7, chr(34) + "x" + chr(34))}}}}}'
    raw = json.dumps(GEMINI_BODY).replace('{"text": "hi"}', f'{{"text": "hi"}}, {part}')
    answer = await post(proxy, GEMINI, raw)
    assert answer.status == 200
    assert "executableCode" in proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    answer = await post(proxy, GEMINI, raw.replace(nested(MAX_DEPTH - 7, '"x"'),
                                                   nested(400, '"x"')))
    assert answer.status == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("role", [[], {"a": 1}, [[["user"]]]])
async def test_gemini_nested_role_is_invalid_argument(proxy, role):
    body = {"contents": [{"role": role, "parts": [{"text": "hi"}]}]}
    answer = await post(proxy, GEMINI, body)
    assert answer.status == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "contents[0].role" in answer.json()["error"]["message"]
    nothing_spent(proxy)


@pytest.mark.parametrize("role", [[], {"a": 1}])
async def test_lm_list_role_is_a_400_naming_it(proxy, role):
    body = {"model": "deepseek-chat", "messages": [{"role": role, "content": "x"}]}
    answer = await post(proxy, "/lm/v2/chat/completions", body)
    openai_param(answer.status, answer.json(), "messages[0].role")
    nothing_spent(proxy)


@pytest.mark.parametrize("field, value", [
    ("user", {"deep": [[["x"]]]}), ("instructions", ["not", "text"]), ("temperature", "hot"),
    ("temperature", 9), ("previous_response_id", {"x": 1}), ("metadata", {"k": 5}),
    ("max_output_tokens", -1), ("stream", "no"),
])
async def test_responses_fields_are_checked_before_the_turn(proxy, field, value):
    """They used to be echoed unchecked and fail serialising after the turn."""
    answer = await post(proxy, "/v1/responses",
                        {"model": "deepseek-chat", "input": "hi", field: value})
    openai_param(answer.status, answer.json(), field)
    nothing_spent(proxy)


async def test_responses_echo_the_validated_settings(proxy):
    answer = await post(proxy, "/v1/responses", {
        "model": "deepseek-chat", "input": "hi", "user": "u-1", "instructions": "Be brief.",
        "temperature": 0.5, "top_p": 1})
    assert answer.status == 200
    echoed = answer.json()
    assert (echoed["user"], echoed["instructions"], echoed["temperature"], echoed["top_p"]) == (
        "u-1", "Be brief.", 0.5, 1)


@pytest.mark.parametrize("path, body", [
    (CHAT, {**OPENAI_BODY, "tool_choice": {"type": [[["x"]]]}}),
    (CHAT, {**OPENAI_BODY, "response_format": {"type": {"deep": [1]}}}),
    (MESSAGES, {**CLAUDE_BODY, "tool_choice": {"type": [{"x": [1]}]}}),
])
async def test_error_messages_never_quote_nested_client_values(proxy, path, body):
    answer = await post(proxy, path, body)
    message = answer.json()["error"]["message"]
    assert answer.status == 400 and "[" not in message.replace("[0]", "") and "{" not in message
    nothing_spent(proxy)


def test_depth_walk_is_iterative_and_exact():
    deep = json.loads(nested(900))
    assert deeper_than(deep, MAX_DEPTH) and not deeper_than(json.loads(nested(5)), 5)
    assert deeper_than(json.loads(nested(6)), 5)


async def test_a_huge_model_name_is_not_echoed_whole(proxy):
    answer = await post(proxy, CHAT, {**OPENAI_BODY, "model": "m" * 100_000})
    assert answer.status == 400 and answer.json()["error"]["param"] == "model"
    assert len(answer.json()["error"]["message"]) < 300
    nothing_spent(proxy)


@pytest.mark.parametrize("path", [CHAT, "/api/v1/chat/completions", "/lm/v2/chat/completions"])
@pytest.mark.parametrize("fields, param", [
    ({"messages": [{"role": "user", "content": [None]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": ["x"]}]}]},
     "messages[0].content[0].text"),
    ({"tools": [{"type": "function", "function": {"name": 5}}]}, "tools[0].function.name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format.json_schema.schema"),
])
async def test_chat_dialects_refuse_malformed_content_tools_and_formats(proxy, path, fields,
                                                                       param):
    """The chat dialects share the parser: each refuses what it once dropped."""
    answer = await post(proxy, path, {**OPENAI_BODY, **fields})
    openai_param(answer.status, answer.json(), param)
    nothing_spent(proxy)


@pytest.mark.parametrize("path", [MESSAGES, "/api/v1/messages", MESSAGES + "/count_tokens"])
async def test_claude_dialects_refuse_unknown_roles_and_blockless_text(proxy, path):
    for messages, field in (([{"role": "bot", "content": "x"}], "messages[0].role"),
                            ([{"role": "user", "content": [{"type": "text"}]}],
                             "messages[0].content[0].text")):
        answer = await post(proxy, path, {**CLAUDE_BODY, "messages": messages})
        error = answer.json()["error"]
        assert answer.status == 400 and answer.json()["type"] == "error"
        assert error["type"] == "invalid_request_error" and field in error["message"]
    nothing_spent(proxy)


@pytest.mark.parametrize("path", [GEMINI, GEMINI.replace(":generateContent",
                                                         ":streamGenerateContent?alt=sse"),
                                  GEMINI.replace(":generateContent", ":countTokens")])
@pytest.mark.parametrize("parts, field", [
    ([5], "contents[0].parts[0]"), ([{"text": 5}], "contents[0].parts[0].text"),
    ([None], "contents[0].parts[0]"),
])
async def test_gemini_parts_of_the_wrong_type_are_invalid_argument(proxy, path, parts, field):
    answer = await post(proxy, path, {"contents": [{"role": "user", "parts": parts}]})
    assert answer.status == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert field in answer.json()["error"]["message"]
    nothing_spent(proxy)


async def test_gemini_function_role_and_built_in_tools_stay_accepted(proxy):
    """The older ``function`` role carries results; built-in tools declare no function."""
    body = {"contents": [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {}}}]},
        {"role": "function", "parts": [{"functionResponse": {"name": "w",
                                                             "response": {"t": 21}}}]}],
        "tools": [{"googleSearch": {}}, {"functionDeclarations": [{"name": "w"}]}]}
    answer = await post(proxy, GEMINI, body)
    assert answer.status == 200
    assert '"t":21' in proxy.fake.calls_to("chat/completion")[-1].body["prompt"].replace(" ", "")


async def test_ollama_tools_without_a_name_are_refused(proxy):
    body = {"model": "deepseek-chat", "messages": USER, "stream": False,
            "tools": [{"type": "function", "function": {"description": "nameless"}}]}
    answer = await post(proxy, "/api/chat", body)
    assert answer.status == 400 and "tools[0].function.name" in answer.json()["error"]
    nothing_spent(proxy)


@pytest.mark.parametrize("method", [":generateContent", ":streamGenerateContent"])
async def test_gemini_unknown_alt_is_invalid_argument_before_the_turn(proxy, method):
    """It used to be answered as a JSON array (or whole JSON) nobody asked for."""
    answer = await post(proxy, GEMINI.replace(":generateContent", method) + "?alt=xml",
                        GEMINI_BODY)
    assert answer.status == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "'alt'" in answer.json()["error"]["message"]
    nothing_spent(proxy)
    answer = await post(proxy, GEMINI.replace(":generateContent", method) + "?alt=json",
                        GEMINI_BODY)
    assert answer.status == 200


async def test_responses_input_with_nothing_to_answer_says_so(proxy):
    """Items were given, so "must include 'input'" misled; the message says what is missing."""
    answer = await post(proxy, "/v1/responses", {"model": "deepseek-chat",
                                                 "input": [{"type": "bogus"}]})
    message = openai_param(answer.status, answer.json(), "input")
    assert "no item" in message
    nothing_spent(proxy)


@pytest.mark.parametrize("messages, param", [
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64,!!!"}}]}], "messages[0].content[0].image_url"),
    ([{"role": "user", "content": [{"type": "image_url"}]}], "messages[0].content[0].image_url"),
    ([{"role": "user", "content": [{"type": "file", "file": {"file_data": "@@"}}]}],
     "messages[0].content[0].file.file_data"),
    ([{"role": "system", "content": 5}, *USER], "messages[0].content"),
    ([{"role": "assistant", "content": "x", "tool_calls": [5]}, *USER],
     "messages[0].tool_calls[0]"),
    ([{"role": "assistant", "content": "x", "tool_calls": [{"id": "a", "type": "function",
                                                             "function": {}}]}, *USER],
     "messages[0].tool_calls[0].function.name"),
])
async def test_openai_attachments_and_history_of_the_wrong_shape_are_400s(proxy, messages,
                                                                         param):
    """The garbage data URL used to be decoded leniently and uploaded upstream."""
    answer = await post(proxy, CHAT, {**OPENAI_BODY, "messages": messages})
    openai_param(answer.status, answer.json(), param)
    nothing_spent(proxy)


async def test_undecodable_inline_data_is_refused_in_every_family(proxy):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "!!!"}}
    answer = await post(proxy, MESSAGES, {**CLAUDE_BODY, "messages": [
        {"role": "user", "content": [image]}]})
    assert answer.status == 400
    assert "messages[0].content[0].source.data" in answer.json()["error"]["message"]
    blob = {"inlineData": {"mimeType": "image/png", "data": "!!!"}}
    answer = await post(proxy, GEMINI, {"contents": [{"role": "user", "parts": [blob]}]})
    assert answer.status == 400 and "inlineData.data" in answer.json()["error"]["message"]
    nothing_spent(proxy)


@pytest.mark.parametrize("path, body, field", [
    (CHAT, {**OPENAI_BODY, "messages": [{"role": "user"}]}, "messages[0].content"),
    ("/lm/v2/chat/completions", {**OPENAI_BODY, "messages": [{"role": "user"}]},
     "messages[0].content"),
    ("/v1/responses", {"model": "deepseek-chat", "input": [{"role": "user"}]},
     "input[0].content"),
    (MESSAGES, {**CLAUDE_BODY, "messages": [{"role": "user"}]}, "messages[0].content"),
    (GEMINI, {"contents": [{"role": "user"}]}, "contents[0].parts"),
])
async def test_a_user_turn_without_content_is_refused(proxy, path, body, field):
    """It used to run a turn on an empty prompt ("You said: (nothing)")."""
    answer = await post(proxy, path, body)
    error = answer.json()["error"]
    assert answer.status == 400 and field in error["message"]
    nothing_spent(proxy)


@pytest.mark.parametrize("path, body, field", [
    (CHAT, {**OPENAI_BODY, "messages": [{"role": "user", "content": []}]},
     "messages[0].content"),
    ("/api/v1/chat/completions", {**OPENAI_BODY, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"},
        {"role": "user", "content": []}]}, "messages[2].content"),
    ("/v1/responses", {"model": "deepseek-chat", "input": [{"role": "user", "content": []}]},
     "input[0].content"),
    (MESSAGES, {**CLAUDE_BODY, "messages": [{"role": "user", "content": []}]},
     "messages[0].content"),
    (MESSAGES, {**CLAUDE_BODY, "messages": [{"role": "user", "content": ""}]},
     "messages[0].content"),
    (MESSAGES, {**CLAUDE_BODY, "messages": [{"role": "user", "content": [
        {"type": "text", "text": ""}, {"type": "text", "text": "", "cache_control": {}}]}]},
     "messages[0].content"),
    ("/api/v1/messages", {**CLAUDE_BODY, "messages": [
        {"role": "user", "content": ""}, {"role": "assistant", "content": "x"},
        {"role": "user", "content": "hi"}]}, "messages[0].content"),
    (GEMINI, {"contents": [{"role": "user", "parts": []}]}, "contents[0].parts"),
    ("/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
     {"contents": [{"role": "user", "parts": [{"text": "hi"}]},
                   {"role": "model", "parts": []}]}, "contents[1].parts"),
])
async def test_an_empty_user_turn_is_refused(proxy, path, body, field):
    """An empty list of parts (or Anthropic's empty string) is what the
    official APIs refuse; it used to run a turn on "(nothing)"."""
    answer = await post(proxy, path, body)
    error = answer.json()["error"]
    assert answer.status == 400 and field in error["message"]
    nothing_spent(proxy)


async def test_an_empty_final_assistant_message_is_still_a_prefill(proxy):
    body = {**CLAUDE_BODY, "messages": [*USER, {"role": "assistant", "content": ""}]}
    assert (await post(proxy, MESSAGES, body)).status == 200
    chat = {**OPENAI_BODY, "messages": [*USER, {"role": "assistant", "content": []}]}
    assert (await post(proxy, CHAT, chat)).status == 200


@pytest.mark.parametrize("path, body, param", [
    (CHAT, {**OPENAI_BODY, "reasoning_effort": "hgih"}, "reasoning_effort"),
    (CHAT, {**OPENAI_BODY, "reasoning_effort": 5}, "reasoning_effort"),
    ("/lm/v2/chat/completions", {**OPENAI_BODY, "reasoning_effort": "max-ish"},
     "reasoning_effort"),
    ("/v1/responses", {"model": "deepseek-chat", "input": "hi",
                       "reasoning": {"effort": "bogus"}}, "reasoning.effort"),
    ("/v1/responses", {"model": "deepseek-chat", "input": "hi",
                       "reasoning": {"summary": "long"}}, "reasoning.summary"),
    ("/v1/responses", {"model": "deepseek-chat", "input": "hi", "truncation": "bogus"},
     "truncation"),
    (MESSAGES, {**CLAUDE_BODY, "thinking": {"type": "enabeld", "budget_tokens": 2048}},
     "thinking.type"),
])
async def test_a_misspelt_thinking_setting_is_refused_not_ignored(proxy, path, body, param):
    """A typo in the family's own thinking field used to fall back to the
    model default without a word (the official APIs refuse it)."""
    answer = await post(proxy, path, body)
    if path == MESSAGES:
        error = answer.json()["error"]
        assert answer.status == 400 and error["param"] == param and param in error["message"]
    else:
        openai_param(answer.status, answer.json(), param)
    nothing_spent(proxy)


async def test_a_misspelt_gemini_thinking_level_is_invalid_argument(proxy):
    body = {**GEMINI_BODY, "generationConfig": {"thinkingConfig": {"thinkingLevel": "hihg"}}}
    answer = await post(proxy, GEMINI, body)
    assert answer.status == 400 and "thinkingLevel" in answer.json()["error"]["message"]
    nothing_spent(proxy)


@pytest.mark.parametrize("path, body", [
    (CHAT, {**OPENAI_BODY, "reasoning_effort": " High "}),
    (CHAT, {**OPENAI_BODY, "reasoning_effort": "none"}),
    ("/v1/responses", {"model": "deepseek-chat", "input": "hi", "reasoning": "high",
                       "truncation": "auto"}),
    ("/v1/responses", {"model": "deepseek-chat", "input": "hi",
                       "reasoning": {"effort": "xhigh", "summary": "detailed"}}),
    (MESSAGES, {**CLAUDE_BODY, "thinking": {"type": "adaptive"}}),
    (GEMINI, {**GEMINI_BODY, "generationConfig": {"thinkingConfig": {"thinkingLevel": "low"}}}),
])
async def test_documented_thinking_settings_are_still_served(proxy, path, body):
    assert (await post(proxy, path, body)).status == 200
