"""OpenAI chat completions end to end: official client → ds2proxy → fake DeepSeek.

Recordings of the real upstream are replayed and must come back byte for
byte; failures before and after the first byte, token expiry, limits and
bad input are exercised on a server listening on a real port.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest

from dsml_util import dsml
from ds2proxy.testing import Delivery, HttpFault, Replay, Scripted, load_expected
from ds2proxy.testing.clients import openai_client

RECORDINGS = [
    "markdown-format-example-20260405-spacefix",
    "longtext-deepseek-v4-flash-20260429",
    "continue-thinking-snapshot-replay-20260405",
    "guangzhou-weather-reasoner-search-20260404",
]


USER = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("name", RECORDINGS)
async def test_recording_reconstructs_exactly_non_stream(proxy, fixtures_dir, name):
    want = load_expected(fixtures_dir / "deepseek-sse" / name)
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    resp = await openai_client(proxy).chat.completions.create(model="deepseek-reasoner",
                                                              messages=USER)
    msg = resp.choices[0].message
    assert msg.content == want["content"]
    assert msg.model_extra["reasoning_content"] == want["thinking"]
    assert resp.choices[0].finish_reason == "stop"
    assert len(proxy.fake.calls_to("chat/continue")) == want["rounds"] - 1
    assert resp.usage.completion_tokens > 0 and resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens_details.reasoning_tokens > 0


@pytest.mark.parametrize("name", RECORDINGS)
async def test_recording_reconstructs_exactly_stream(proxy, fixtures_dir, name):
    want = load_expected(fixtures_dir / "deepseek-sse" / name)
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    stream = await openai_client(proxy).chat.completions.create(
        model="deepseek-reasoner", messages=USER, stream=True,
        stream_options={"include_usage": True})
    content, thinking, finish, usage = [], [], None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            content.append(choice.delta.content or "")
            thinking.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
            finish = choice.finish_reason or finish
    assert "".join(content) == want["content"]
    assert "".join(thinking) == want["thinking"]
    assert finish == "stop"
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert len(proxy.fake.calls_to("chat/continue")) == want["rounds"] - 1
    assert proxy.core.pool.inflight == 0


async def test_sync_client_stream_and_non_stream(proxy):
    sync = openai_client(proxy, sync=True)
    proxy.fake.enqueue(Scripted(thinking="hmm", answer="Hello there, friend."))
    resp = await asyncio.to_thread(sync.chat.completions.create, model="deepseek-chat",
                                   messages=USER)
    assert resp.choices[0].message.content == "Hello there, friend."
    # deepseek-chat does not show thinking even though the upstream sent some.
    assert "reasoning_content" not in (resp.choices[0].message.model_extra or {})

    proxy.fake.enqueue(Scripted(answer="  two  spaces\n\nand lines  "))

    def stream_text() -> str:
        chunks = sync.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert await asyncio.to_thread(stream_text) == "  two  spaces\n\nand lines  "


async def test_model_name_is_echoed_and_thinking_switch_honoured(proxy):
    proxy.fake.enqueue(Scripted(thinking="private", answer="ok"))
    resp = await openai_client(proxy).chat.completions.create(
        model="GPT-4O", messages=USER, extra_body={"thinking": {"type": "enabled"}})
    assert resp.model == "GPT-4O"
    assert resp.choices[0].message.model_extra["reasoning_content"] == "private"
    sent = proxy.fake.calls_to("chat/completion")[-1].body
    assert sent["thinking_enabled"] is True and sent["search_enabled"] is False

    proxy.fake.enqueue(Scripted(answer="ok"))
    await openai_client(proxy).chat.completions.create(
        model="deepseek-reasoner-search", messages=USER,
        extra_body={"thinking": {"type": "disabled"}})
    sent = proxy.fake.calls_to("chat/completion")[-1].body
    assert sent["thinking_enabled"] is False and sent["search_enabled"] is True


async def test_prompt_reaches_upstream_flattened(proxy):
    proxy.fake.enqueue(Scripted(answer="ok"))
    await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"}])
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert prompt.startswith("<｜begin▁of▁sentence｜><｜System｜>")
    assert "Be brief." in prompt
    assert prompt.endswith("<｜User｜>Weather in Paris?<｜Assistant｜>")


@pytest.mark.parametrize("refused", [
    {"content": None, "refusal": "I can't help with that."},
    {"content": [{"type": "refusal", "refusal": "I can't help with that."}]},
], ids=["field", "part"])
async def test_an_assistant_refusal_in_the_history_stays_its_turn(proxy, refused):
    """OpenAI history may hold a refused assistant turn (a ``refusal`` field
    or content part). It was dropped, so the user turns around it merged
    into one and the model never saw that it had refused."""
    await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=[
        {"role": "user", "content": "first"}, {"role": "assistant", **refused},
        {"role": "user", "content": "second"}])
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert prompt.endswith("<｜User｜>first<｜Assistant｜>I can't help with that."
                           "<｜end▁of▁sentence｜><｜User｜>second<｜Assistant｜>")


async def test_a_refusal_in_a_responses_history_stays_its_turn(proxy):
    await openai_client(proxy).responses.create(model="deepseek-chat", input=[
        {"role": "user", "content": "first"},
        {"type": "message", "role": "assistant", "content": [
            {"type": "refusal", "refusal": "No."}]},
        {"role": "user", "content": "second"}])
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert prompt.endswith("<｜User｜>first<｜Assistant｜>No.<｜end▁of▁sentence｜>"
                           "<｜User｜>second<｜Assistant｜>")


async def test_models_routes(proxy):
    c = openai_client(proxy)
    ids = [m.id async for m in c.models.list()]
    assert {"deepseek-chat", "deepseek-reasoner", "deepseek-chat-search",
            "deepseek-reasoner-search"} <= set(ids)
    model = await c.models.retrieve("gpt-4o")
    assert model.id == "deepseek-chat"
    with pytest.raises(openai.NotFoundError):
        await c.models.retrieve("no-such-model-anywhere")


# -- failures and recovery ------------------------------------------------------


async def test_expired_token_is_refreshed_once(proxy):
    proxy.fake.enqueue(Scripted(answer="first"), Scripted(answer="second"))
    c = openai_client(proxy)
    assert (await c.chat.completions.create(model="deepseek-chat",
                                            messages=USER)).choices[0].message.content == "first"
    logins = len(proxy.fake.calls_to("users/login"))
    proxy.fake.revoke_tokens()
    resp = await c.chat.completions.create(model="deepseek-chat", messages=USER)
    assert resp.choices[0].message.content == "second"
    assert len(proxy.fake.calls_to("users/login")) == logins + 1
    saved = json.loads(proxy.config_path.read_text())
    assert all(a.get("token") for a in saved["accounts"] if a["email"] in {
        c.account for c in proxy.fake.calls_to("chat/completion")})


async def test_upstream_5xx_before_first_byte_moves_to_another_account(proxy):
    proxy.fake.enqueue(HttpFault(502), Scripted(answer="from the other account"))
    resp = await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER)
    assert resp.choices[0].message.content == "from the other account"
    accounts = [c.account for c in proxy.fake.calls_to("chat/completion")]
    assert len(accounts) == 2 and accounts[0] != accounts[1]
    assert proxy.core.pool.inflight == 0


async def test_upstream_429_on_every_account_is_a_429_with_retry_after(proxy):
    proxy.fake.enqueue(HttpFault(429), HttpFault(429))
    with pytest.raises(openai.RateLimitError) as info:
        await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER)
    assert info.value.response.headers.get("Retry-After")
    assert proxy.core.pool.inflight == 0


async def test_drop_after_first_byte_ends_stream_with_error(proxy):
    proxy.fake.enqueue(Scripted(answer="partial answer that never ends", chunk_size=2,
                                delivery=Delivery(drop_after=8)))
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                             json={"model": "deepseek-chat", "messages": USER,
                                   "stream": True}) as resp:
            assert resp.status == 200
            body = (await resp.read()).decode()
    frames = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])
    assert error["error"]["type"] == "api_error" and error["status_code"] == 502
    assert not any('"finish_reason":"stop"' in f for f in frames)
    assert proxy.core.pool.inflight == 0


async def test_content_filter_keeps_partial_answer(proxy):
    proxy.fake.enqueue(Scripted(answer="Some text.", content_filter=True))
    resp = await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER)
    assert resp.choices[0].message.content == "Some text."
    assert resp.choices[0].finish_reason == "content_filter"


async def test_content_filter_without_text_is_a_400(proxy):
    proxy.fake.enqueue(Scripted(answer="", content_filter=True))
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER)
    assert info.value.body["code"] == "content_filter"


async def test_empty_output_is_retried_in_the_same_session(proxy):
    proxy.fake.enqueue(Scripted(hint="rate_limit_reached"), Scripted(answer="now visible"))
    resp = await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER)
    assert resp.choices[0].message.content == "now visible"
    calls = proxy.fake.calls_to("chat/completion")
    assert calls[1].body["chat_session_id"] == calls[0].body["chat_session_id"]
    assert calls[1].body["parent_message_id"] is not None


@pytest.mark.parametrize("stream", [False, True])
async def test_a_blank_answer_retried_leaves_no_whitespace_before_the_new_one(proxy, stream):
    """Whitespace alone is no answer: it is asked again, and its blanks never
    reach the client before the retry's answer (they used to stream first)."""
    proxy.fake.enqueue(Scripted(answer=" \n\n ", chunk_size=1),
                       Scripted(answer="\nnow visible", chunk_size=2))
    c = openai_client(proxy)
    if stream:
        chunks = await c.chat.completions.create(model="deepseek-chat", messages=USER,
                                                 stream=True)
        deltas = [ch.choices[0].delta.content async for ch in chunks
                  if ch.choices and ch.choices[0].delta.content]
        assert deltas[0] == "\nn"  # the retry's own first chunk
        text = "".join(deltas)
    else:
        resp = await c.chat.completions.create(model="deepseek-chat", messages=USER)
        text = resp.choices[0].message.content
    assert text == "\nnow visible"
    assert len(proxy.fake.calls_to("chat/completion")) == 2


READ_TOOL = {"type": "function", "function": {
    "name": "read_file", "parameters": {"type": "object", "properties": {
        "path": {"type": "string"}}, "required": ["path"]}}}
CALL_BLOCK = dsml(("read_file", {"path": "a.txt"}))


async def test_newlines_before_a_call_make_no_content_chunk(proxy):
    proxy.fake.enqueue(Scripted(answer="\n\n" + CALL_BLOCK + "\n", chunk_size=1))
    chunks = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=USER, tools=[READ_TOOL], stream=True)
    deltas = [ch.choices[0].delta async for ch in chunks if ch.choices]
    assert [d.content for d in deltas if d.content] == []
    assert [c.function.name for d in deltas for c in d.tool_calls or []] == ["read_file"]


async def test_empty_output_twice_on_one_account_is_429(proxy_factory):
    proxy = await proxy_factory({"accounts": [{"email": "alice@example.com",
                                              "password": "pw-alice"}]})
    proxy.fake.enqueue(Scripted(hint="rate_limit_reached"), Scripted(hint="rate_limit_reached"))
    with pytest.raises(openai.RateLimitError) as info:
        await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER)
    assert info.value.body["code"] == "upstream_empty_output"


async def test_empty_output_twice_fails_over_then_is_429(proxy):
    # Twice empty on one account is its rate limit: the other account is
    # tried (its own retry included) before the caller gets the 429.
    proxy.fake.enqueue(*[Scripted(hint="rate_limit_reached")] * 4)
    with pytest.raises(openai.RateLimitError):
        await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER)
    accounts = [c.account for c in proxy.fake.calls_to("chat/completion")]
    assert len(accounts) == 4 and len(set(accounts)) == 2


# -- limits --------------------------------------------------------------------


async def test_burst_respects_limits_and_full_pool_answers_429(proxy_factory):
    proxy = await proxy_factory({"runtime": {"account_max_inflight": 1, "account_max_queue": 2}})
    slow = Delivery(chunk_delay=0.05)
    proxy.fake.enqueue(*[Scripted(answer="abcdef", chunk_size=1, delivery=slow)
                         for _ in range(8)])
    c = openai_client(proxy)
    peak = 0

    async def watch():
        nonlocal peak
        while True:
            peak = max(peak, proxy.core.pool.inflight)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(
        *(c.chat.completions.create(model="deepseek-chat", messages=USER) for _ in range(6)),
        return_exceptions=True)
    watcher.cancel()
    ok = [r for r in results if not isinstance(r, Exception)]
    limited = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(ok) == 4 and len(limited) == 2  # 2 accounts x 1 + queue of 2
    assert all(r.response.headers["Retry-After"] for r in limited)
    assert peak <= 2
    assert proxy.core.pool.inflight == 0


async def test_lease_released_when_client_disconnects_mid_stream(proxy):
    proxy.fake.enqueue(Scripted(answer="x" * 400, chunk_size=1,
                                delivery=Delivery(chunk_delay=0.02)))
    async with aiohttp.ClientSession() as http:
        resp = await http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                               json={"model": "deepseek-chat", "messages": USER, "stream": True})
        await resp.content.readline()
        assert proxy.core.pool.inflight == 1
        resp.close()
    for _ in range(500):
        if proxy.core.pool.inflight == 0:
            break
        await asyncio.sleep(0.01)
    assert proxy.core.pool.inflight == 0


async def test_target_account_header_pins_the_account(proxy):
    proxy.fake.enqueue(Scripted(answer="a"), Scripted(answer="b"))
    c = openai_client(proxy, default_headers={"X-Ds2-Target-Account": "bob@example.com"})
    for _ in range(2):
        await c.chat.completions.create(model="deepseek-chat", messages=USER)
    assert {c.account for c in proxy.fake.calls_to("chat/completion")} == {"bob@example.com"}


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    (b'{"model": "deepseek-chat"}', 400, "messages"),
    (b'{"model": "deepseek-chat", "messages": []}', 400, "messages"),
    (b'{"model": "totally-custom", "messages": [{"role": "user", "content": "x"}]}', 400,
     "model"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model"),
    (b"\xff\xfe", 400, None),
    (b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}], '
     b'"max_completion_tokens": 0}', 400, "max_completion_tokens"),
    (b'{"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}], '
     b'"max_tokens": "many"}', 400, "max_tokens"),
])
async def test_bad_input_gets_openai_error_shape(proxy, body, status, param):
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", data=body,
                             headers=proxy.headers(**{"Content-Type": "application/json"})
                             ) as resp:
            assert resp.status == status
            err = (await resp.json())["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    assert err["param"] == param
    assert proxy.core.pool.inflight == 0


async def test_bad_key_with_passthrough_off_is_401(proxy_factory):
    proxy = await proxy_factory({"auth": {"allow_passthrough": False}})
    c = openai_client(proxy, key="wrong")
    with pytest.raises(openai.AuthenticationError) as info:
        await c.chat.completions.create(model="deepseek-chat", messages=USER)
    assert info.value.body["type"] == "authentication_error"


async def test_passthrough_token_used_directly_and_refusal_is_401(proxy):
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions",
                             headers={"Authorization": "Bearer not-a-deepseek-token"},
                             json={"model": "deepseek-chat", "messages": USER}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["type"] == "authentication_error"
    assert proxy.fake.calls_to("users/login") == []


async def test_health_ready_and_cors(proxy):
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/healthz") as resp:
            assert await resp.json() == {"status": "ok"}
        async with http.get(proxy.url + "/readyz") as resp:
            assert await resp.json() == {"status": "ready"}
        asked = ("authorization, x-stainless-helper-method, "
                 "anthropic-dangerous-direct-browser-access")
        async with http.options(proxy.url + "/v1/chat/completions", headers={
                "Origin": "http://x", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": asked}) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            # Whatever an SDK asks to send is allowed.
            assert resp.headers["Access-Control-Allow-Headers"] == asked
        async with http.options(proxy.url + "/v1/chat/completions", headers={
                "Origin": "http://x", "Access-Control-Request-Method": "POST"}) as resp:
            assert "X-Ds2-Target-Account" in resp.headers["Access-Control-Allow-Headers"]
        async with http.get(proxy.url + "/v1/models", headers=proxy.headers()) as resp:
            assert resp.headers["Access-Control-Expose-Headers"] == (
                "Retry-After, X-Request-Id, Request-Id, X-DS2Proxy-Served-By")


async def test_openai_models_list_keeps_its_shape_beside_google_clients(proxy):
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/v1/models") as resp:
            openai_shape = await resp.json()
        async with http.get(proxy.url + "/v1/models", headers={"x-goog-api-key": "k"}) as resp:
            google_shape = await resp.json()
    assert openai_shape["object"] == "list" and "models" not in openai_shape
    assert "models" in google_shape and google_shape["models"][0]["name"].startswith("models/")


async def test_search_answer_carries_url_citations(proxy, fixtures_dir):
    name = "guangzhou-weather-reasoner-search-20260404"
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    resp = await openai_client(proxy).chat.completions.create(model="deepseek-reasoner-search",
                                                              messages=USER)
    message = resp.choices[0].message
    # raw markers kept
    assert message.content == load_expected(fixtures_dir / "deepseek-sse" / name)["content"]
    urls = [a.url_citation.url for a in message.annotations]
    assert urls and all(u.startswith("http") for u in urls)


async def test_markdown_citation_style_links_the_markers(proxy_factory, fixtures_dir):
    proxy = await proxy_factory({"search": {"citation_style": "markdown"}})
    name = "guangzhou-weather-reasoner-search-20260404"
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    stream = await openai_client(proxy).chat.completions.create(
        model="deepseek-reasoner-search", messages=USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "[reference:" not in text
    assert "](http" in text


TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
CALLED = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fields, param", [
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages[0].content[0].text"),
    ({"tools": [{"type": "function", "function": {"description": "nameless"}}]},
     "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
     "tools[0].function.parameters"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
])
async def test_malformed_messages_tools_and_formats_are_400s_before_any_work(
        proxy, fields, param, stream):
    """Each was once dropped or guessed at and the turn run anyway (the missing
    schema cost a whole turn before a 422); now a 400 names the field, and a
    stream is refused before it starts."""
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}],
            **fields}
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).chat.completions.create(**body, stream=stream)
    error = info.value.body
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert param in error["message"]
    assert proxy.fake.calls == [] and proxy.core.pool.inflight == 0


@pytest.mark.parametrize("call_id", ["call_1", "call_9"])
async def test_a_tool_result_is_served_whether_or_not_its_call_is_in_the_history(
        proxy, call_id):
    """The conversion is lenient (prompt-compat 4.1): a client that trimmed
    the call from its history still gets an answer."""
    proxy.fake.enqueue(Scripted(answer="done"))
    answer = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", tools=[TOOL], messages=[
            {"role": "user", "content": "look it up"}, CALLED,
            {"role": "tool", "tool_call_id": call_id, "content": "42"}])
    assert answer.choices[0].message.content == "done"
    assert "42" in proxy.fake.calls_to("chat/completion")[-1].body["prompt"]


async def test_parallel_results_in_any_order_name_the_tools_they_answer(proxy):
    """Chat tool messages carry only ``tool_call_id``: the header of each
    result names the tool of the call it answers, in the order sent."""
    calls = [{"id": "call_a", "type": "function",
              "function": {"name": "lookup", "arguments": '{"q":"x"}'}},
             {"id": "call_b", "type": "function",
              "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]
    tools = [TOOL, {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    proxy.fake.enqueue(Scripted(answer="done"))
    await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", tools=tools, messages=[
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_b", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_a", "content": "42"}])
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert ("[tool_result name=weather id=call_b]\nrain\n\n"
            "[tool_result name=lookup id=call_a]\n42") in prompt


FUNCTIONS = [{"name": "lookup", "description": "Look a word up",
              "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
TWO_CALLS = dsml(("lookup", {"q": "a"}), ("lookup", {"q": "b"}))


async def test_legacy_functions_are_offered_and_answered_as_function_call(proxy):
    """The deprecated functions / function_call pair was ignored: the model was
    never offered the function, and a call came back as tool_calls the
    client does not read. Now one call comes back as message.function_call."""
    proxy.fake.enqueue(Scripted(answer=TWO_CALLS, chunk_size=7))
    client = openai_client(proxy)
    answer = await client.chat.completions.create(
        model="deepseek-chat", messages=USER, functions=FUNCTIONS, function_call="auto")
    choice = answer.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert (choice.message.function_call.name, choice.message.function_call.arguments) == (
        "lookup", '{"q":"a"}')
    assert "Tool: lookup" in proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    proxy.fake.enqueue(Scripted(answer=TWO_CALLS, chunk_size=7))
    chunks = [chunk async for chunk in await client.chat.completions.create(
        model="deepseek-chat", messages=USER, functions=FUNCTIONS,
        function_call={"name": "lookup"}, stream=True)]
    deltas = [c.choices[0].delta for c in chunks]
    assert all(d.tool_calls is None for d in deltas)
    called = [d.function_call for d in deltas if d.function_call]
    assert called[0].name == "lookup" and "".join(c.arguments for c in called) == '{"q":"a"}'
    assert chunks[-1].choices[0].finish_reason == "function_call"


@pytest.mark.parametrize("fields, param", [
    ({"functions": "lookup"}, "functions"),
    ({"functions": [{"parameters": {"type": "object"}}]}, "functions[0].name"),
    ({"functions": FUNCTIONS, "function_call": {"name": "other"}}, "function_call.name"),
    ({"functions": FUNCTIONS, "function_call": 5}, "function_call"),
])
async def test_malformed_legacy_functions_are_400s_naming_them(proxy, fields, param):
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).chat.completions.create(
            model="deepseek-chat", messages=USER, **fields)
    assert info.value.param == param
    assert proxy.fake.calls == []


CUSTOM = [{"type": "custom", "custom": {"name": "apply_patch", "description": "Apply a patch"}}]


async def test_custom_tools_nested_as_chat_nests_them_are_offered_and_called(proxy):
    """Chat Completions nests a custom tool under "custom": it was skipped
    unseen, and a history holding its call was a 400."""
    patch = "*** Begin Patch\n*** End Patch"
    proxy.fake.enqueue(Scripted(answer=dsml(("apply_patch", {"input": patch})), chunk_size=7),
                       Scripted(answer=dsml(("apply_patch", {"input": patch})), chunk_size=7),
                       Scripted(answer="applied"))
    client = openai_client(proxy)
    answer = await client.chat.completions.create(model="deepseek-chat", messages=USER,
                                                  tools=CUSTOM)
    [call] = answer.choices[0].message.tool_calls
    assert (call.type, call.custom.name, call.custom.input) == ("custom", "apply_patch", patch)
    assert "Tool: apply_patch" in proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    chunks = [c async for c in await client.chat.completions.create(
        model="deepseek-chat", messages=USER, tools=CUSTOM, stream=True) if c.choices]
    streamed = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert streamed[0].type == "custom" and streamed[0].custom["name"] == "apply_patch"
    assert "".join(t.custom["input"] for t in streamed) == patch
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    history = [*USER, {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "custom", "custom": {"name": "apply_patch", "input": patch}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "done"}]
    again = await client.chat.completions.create(model="deepseek-chat", messages=history,
                                                 tools=CUSTOM)
    assert again.choices[0].message.content == "applied"
    assert "*** Begin Patch" in proxy.fake.calls_to("chat/completion")[-1].body["prompt"]


async def test_a_custom_tool_without_a_name_is_a_400(proxy):
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).chat.completions.create(
            model="deepseek-chat", messages=USER, tools=[{"type": "custom", "custom": {}}])
    assert info.value.param == "tools[0].custom.name" and proxy.fake.calls == []


async def test_a_custom_tool_is_forced_by_chat_s_own_tool_choice_shape(proxy):
    """{"type": "custom", "custom": {"name": …}} was a 400 'needs a tool name'."""
    proxy.fake.enqueue(Scripted(answer=dsml(("apply_patch", {"input": "x"}))))
    answer = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=USER, tools=CUSTOM,
        tool_choice={"type": "custom", "custom": {"name": "apply_patch"}})
    assert answer.choices[0].message.tool_calls[0].custom.name == "apply_patch"
    assert "apply_patch" in proxy.fake.calls_to("chat/completion")[-1].body["prompt"]



@pytest.mark.parametrize("path", ["/v1", "/api/v1"])
@pytest.mark.parametrize("fields, param", [
    ({"logprobs": True}, "logprobs"), ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
])
async def test_asking_for_logprobs_is_a_400_not_a_silent_null(proxy, path, fields, param):
    """``logprobs: true`` was answered with ``"logprobs": null``: a client
    scoring tokens read nothing and was told nothing. The web chat reports no
    probabilities, so the field is refused, naming it, before any work."""
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy, path).chat.completions.create(
            model="deepseek-chat", messages=USER, **fields)
    assert info.value.param == param and info.value.code == "unsupported_parameter"
    assert "log probabilities" in info.value.message and proxy.fake.calls == []
    proxy.fake.enqueue(Scripted(answer="fine"))
    answer = await openai_client(proxy, path).chat.completions.create(
        model="deepseek-chat", messages=USER, logprobs=False, top_logprobs=0)
    assert answer.choices[0].message.content == "fine" and answer.choices[0].logprobs is None


@pytest.mark.parametrize("fields, param", [
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}},
     "modalities"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": "text"}, "modalities"),
])
async def test_asking_for_audio_output_is_a_400(proxy, fields, param):
    """Audio asked for was answered with text alone and a 200: the client's
    ``message.audio`` stayed None without a word."""
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).chat.completions.create(
            model="deepseek-chat", messages=USER, **fields)
    assert info.value.param == param and proxy.fake.calls == []
    proxy.fake.enqueue(Scripted(answer="text it is"))
    answer = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=USER, modalities=["text"])
    assert answer.choices[0].message.content == "text it is"


AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}


@pytest.mark.parametrize("path, content, param, code", [
    ("/v1", [AUDIO], "messages[0].content[0].type", "unsupported_value"),
    ("/v1", [{"type": "text", "text": "and this"}, AUDIO], "messages[0].content[1].type",
     "unsupported_value"),
    ("/api/v1", [{"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}],
     "messages[0].content[0].type", "unsupported_value"),
    ("/v1", [{"type": "image", "source": {"type": "url", "url": "https://x/i.png"}}],
     "messages[0].content[0].type", "invalid_value"),
    ("/v1", [{"image_url": {"url": "https://x/i.png"}}], "messages[0].content[0].type",
     "invalid_request"),
])
async def test_a_content_part_the_server_cannot_read_is_a_400_not_dropped(
        proxy, path, content, param, code):
    """An audio question (or any part kind not read here) was skipped: the
    model answered '(nothing)', or the text beside it alone, and the client
    never learnt its audio was unheard. It is a 400 naming the part, before
    any upstream work, as the official API refuses a part it cannot take."""
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as info:
            await openai_client(proxy, path).chat.completions.create(
                model="deepseek-chat", messages=[{"role": "user", "content": content}],
                stream=stream)
        assert info.value.param == param and info.value.code == code
    assert proxy.fake.calls == [] and proxy.core.pool.inflight == 0


@pytest.mark.parametrize("role", ["system", "developer"])
async def test_an_image_in_chat_instructions_is_a_400_not_dropped(proxy, role):
    """A system or developer message's image was dropped unseen; Chat's
    instructions are text only, and the API refuses other parts."""
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=[
            {"role": role, "content": [{"type": "text", "text": "Describe it."},
                                       {"type": "image_url",
                                        "image_url": {"url": "https://x/i.png"}}]},
            *USER])
    assert info.value.param == "messages[0].content[1].type" and proxy.fake.calls == []
    proxy.fake.enqueue(Scripted(answer="fine"))
    answer = await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=[
        {"role": role, "content": [{"type": "text", "text": "Be brief."}]}, *USER])
    assert answer.choices[0].message.content == "fine"


@pytest.mark.parametrize("path", ["/v1", "/api/v1", "/lm/v2"])
async def test_a_text_part_without_text_is_a_400_not_a_turn_of_nothing(proxy, path):
    """[{"type": "text"}] was read as empty text and answered as '(nothing)';
    the API requires the part's text (the Claude routes already refused it)."""
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy, path).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": [{"type": "text"}]}])
    assert info.value.param == "messages[0].content[0].text" and proxy.fake.calls == []


async def test_a_responses_part_the_server_cannot_read_is_a_400(proxy):
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).responses.create(model="deepseek-chat", input=[
            {"role": "user", "content": [{"type": "input_text", "text": "hear this"},
                                         {"type": "input_audio", "input_audio": {}}]}])
    assert info.value.param == "input[0].content[1].type" and proxy.fake.calls == []
