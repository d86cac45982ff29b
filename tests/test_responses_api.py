"""OpenAI Responses end to end: official client → ds2proxy → fake DeepSeek.

Recordings of the real upstream must come back byte for byte through the
Responses shape, the SSE framing and event order are pinned, and the store
behind ``GET /v1/responses/{id}`` and ``previous_response_id`` is exercised
with a second caller and an injected clock.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator

import openai
import pytest
from aiohttp import web

from clock_util import Clock
from ds2proxy.app import start_server
from ds2proxy.plugin_api import PluginAPI, ProxyError, wrap_handler
from ds2proxy.testing import Delivery, Replay, Scripted, load_expected
from ds2proxy.testing.clients import openai_client
from ds2proxy.testing.clients import Reply
from ds2proxy.testing.clients import post as raw_post
from ds2proxy_plugins.openai.responses_store import ResponseStore as InstalledStore
from plugins.openai.responses import ResponsesRoutes
from plugins.openai.responses_store import ResponseStore

RECORDINGS = [
    "markdown-format-example-20260405-spacefix",
    "longtext-deepseek-v4-flash-20260429",
    "continue-thinking-snapshot-replay-20260405",
    "guangzhou-weather-reasoner-search-20260404",
]
OTHER_KEY = "other-test-key"


@pytest.fixture
async def api(proxy) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(proxy) as client:
        yield client


def reasoning_of(output) -> str:
    return "".join(s.text for item in output if item.type == "reasoning" for s in item.summary)


async def raw_events(proxy, body: dict, key: str | None = None) -> tuple[int, list]:
    """POST a stream and cut the body into (event line, JSON or "[DONE]") frames."""
    answer = await post(proxy, body, {"Authorization": f"Bearer {key or proxy.key}"})
    frames = []
    for block in filter(None, answer.text.split("\n\n")):
        lines = block.split("\n")
        if lines[0].startswith(":"):
            continue
        event = lines[0].removeprefix("event: ") if lines[0].startswith("event: ") else None
        data = lines[-1].removeprefix("data: ")
        frames.append((event, data if data == "[DONE]" else json.loads(data)))
    return answer.status, frames


# -- recordings ----------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
async def test_recording_reconstructs_exactly_non_stream(proxy, api, fixtures_dir, name):
    want = load_expected(fixtures_dir / "deepseek-sse" / name)
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))
    resp = await api.responses.create(model="deepseek-reasoner", input="hello")
    assert resp.status == "completed" and resp.id.startswith("resp_")
    assert resp.output_text == want["content"]
    assert reasoning_of(resp.output) == want["thinking"]
    assert [item.type for item in resp.output] == ["reasoning", "message"]
    assert resp.usage.output_tokens_details.reasoning_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert len(proxy.fake.calls_to("chat/continue")) == want["rounds"] - 1


@pytest.mark.parametrize("name", RECORDINGS)
async def test_recording_reconstructs_exactly_stream(proxy, fixtures_dir, name):
    """Through the sync client in a thread: the async one shares the server's loop,
    which makes a 30k-event recording several times slower to read."""
    want = load_expected(fixtures_dir / "deepseek-sse" / name)
    proxy.fake.enqueue(Replay(fixtures_dir / "deepseek-sse" / name))

    def read() -> tuple[str, str, object]:
        text, thinking, final = [], [], None
        with openai_client(proxy, sync=True) as sync:
            for event in sync.responses.create(model="deepseek-reasoner", input="hello",
                                               stream=True):
                if event.type == "response.output_text.delta":
                    text.append(event.delta)
                elif event.type == "response.reasoning_summary_text.delta":
                    thinking.append(event.delta)
                elif event.type == "response.completed":
                    final = event.response
        return "".join(text), "".join(thinking), final

    text, thinking, final = await asyncio.to_thread(read)
    assert final is not None
    assert text == want["content"] == final.output_text
    assert thinking == want["thinking"] == reasoning_of(final.output)
    assert proxy.core.pool.inflight == 0


async def test_sync_client_stream_and_non_stream(proxy):
    proxy.fake.enqueue(Scripted(thinking="hidden", answer="Hello there, friend."),
                       Scripted(answer="  two  spaces\n\nand lines  "))

    def round_trip() -> tuple[object, str]:
        with openai_client(proxy, sync=True) as sync:
            resp = sync.responses.create(model="deepseek-chat", input="hi")
            events = sync.responses.create(model="gpt-4o", input="hi", stream=True)
            text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        return resp, text

    resp, text = await asyncio.to_thread(round_trip)
    assert resp.output_text == "Hello there, friend."
    assert [item.type for item in resp.output] == ["message"]  # thinking off: not shown
    assert text == "  two  spaces\n\nand lines  "


# -- the wire format -----------------------------------------------------------

GOLDEN = [
    "response.created", "response.in_progress",
    "response.output_item.added", "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done", "response.output_item.done",
    "response.output_item.added", "response.content_part.added",
    "response.output_text.delta", "response.output_text.done",
    "response.content_part.done", "response.output_item.done",
    "response.completed", "[DONE]",
]


async def test_stream_event_order_and_framing_are_golden(proxy):
    proxy.fake.enqueue(Scripted(thinking="Let me think.", answer="Hi there, you."))
    status, frames = await raw_events(proxy, {"model": "deepseek-reasoner", "input": "hi",
                                              "stream": True})
    assert status == 200
    names = [e if e is not None else d for e, d in frames]
    assert [k for k, _ in itertools.groupby(names)] == GOLDEN
    payloads = [d for _, d in frames[:-1]]
    assert all(event == data["type"] for event, data in frames[:-1])
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert payloads[0]["response"]["status"] == "in_progress"
    final = payloads[-1]["response"]
    assert final["status"] == "completed" and final["model"] == "deepseek-reasoner"
    assert final["output_text"] == "Hi there, you."
    assert final["output"][0]["summary"][0]["text"] == "Let me think."


async def test_failure_after_the_first_byte_is_response_failed(proxy):
    proxy.fake.enqueue(Scripted(answer="This answer breaks off " * 4, chunk_size=4,
                                delivery=Delivery(drop_after=6)))
    status, frames = await raw_events(proxy, {"model": "deepseek-chat", "input": "hi",
                                              "stream": True})
    names = [e or d for e, d in frames]
    assert status == 200
    assert "response.failed" in names and "response.completed" not in names
    failed = next(d for e, d in frames if e == "response.failed")
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] and failed["response"]["error"]["message"]
    assert proxy.core.pool.inflight == 0


async def test_a_store_failure_at_the_end_fails_with_the_next_sequence_number(
        proxy, monkeypatch):
    """The response is stored before its closing events go out; when that
    fails, response.failed follows the last event sent, numbered right after
    it (the unsent closing events used to take their numbers first)."""
    async def refuse(*_args):
        raise ProxyError("the response store is unavailable", status=503)

    # The class the server runs: the state file's store (the plugin's without one).
    running = type(proxy.core.shared_responses) if proxy.core.shared_responses else InstalledStore
    monkeypatch.setattr(running, "keep", refuse)
    proxy.fake.enqueue(Scripted(answer="Hi there, you."))
    status, frames = await raw_events(proxy, {"model": "deepseek-chat", "input": "hi",
                                              "stream": True})
    assert status == 200 and frames[-1] == (None, "[DONE]")
    payloads = [d for _, d in frames[:-1]]
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert payloads[-2]["type"] == "response.output_text.delta"
    assert payloads[-1]["type"] == "response.failed"
    assert payloads[-1]["response"]["error"]["message"] == "the response store is unavailable"
    assert proxy.core.pool.inflight == 0


async def test_length_limit_makes_an_incomplete_response(proxy, api):
    proxy.fake.enqueue(Scripted(answer="word " * 200, chunk_size=5))
    resp = await api.responses.create(model="deepseek-chat", input="hi",
                                                max_output_tokens=5)
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert 0 < len(resp.output_text) < len("word " * 200)


async def test_the_item_a_length_limit_cuts_is_incomplete_stream_and_not(proxy, api):
    """The cut message says so itself (status incomplete), as OpenAI's does;
    the reasoning closed before it is complete."""
    for _ in range(2):
        proxy.fake.enqueue(Scripted(thinking="short plan", answer="word " * 200))
    whole = await api.responses.create(model="deepseek-reasoner", input="hi",
                                       max_output_tokens=8)
    async with api.responses.stream(model="deepseek-reasoner", input="hi",
                                    max_output_tokens=8) as stream:
        events = [event async for event in stream]
    # (get_final_response wants response.completed: OpenAI's SDK raises on
    # an incomplete stream, so the last event's response is the final one.)
    done = [event.item for event in events if event.type == "response.output_item.done"]
    assert events[-1].type == "response.incomplete"
    streamed = events[-1].response
    assert [(item.type, item.status) for item in done] == [
        ("reasoning", "completed"), ("message", "incomplete")]
    for resp in (whole, streamed):
        assert resp.status == "incomplete"
        assert [(item.type, item.status) for item in resp.output] == [
            ("reasoning", "completed"), ("message", "incomplete")]


async def test_filtered_stream_still_ends_with_response_completed(proxy, api):
    proxy.fake.enqueue(Scripted(answer="Some partial answer", content_filter=True))
    stream = await api.responses.create(model="deepseek-chat", input="hi", stream=True)
    events = [event async for event in stream]
    types = [e.type for e in events]
    assert types[-2:] == ["response.output_item.done", "response.completed"]
    final = events[-1].response
    assert final.incomplete_details.reason == "content_filter"
    assert final.output_text.startswith("Some partial answer")
    assert proxy.core.pool.inflight == 0


async def test_stream_filtered_before_any_text_fails(proxy, api):
    proxy.fake.enqueue(Scripted(answer="", thinking="hmm", content_filter=True))
    stream = await api.responses.create(model="deepseek-reasoner", input="hi", stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "content_filter"


async def test_request_options_are_accepted_and_echoed(proxy, api):
    proxy.fake.enqueue(Scripted(answer="fine"))
    resp = await api.responses.create(
        model="GPT-4O", input=[{"role": "user", "content": "q"}], instructions="Be brief.",
        metadata={"k": "v"}, truncation="auto", service_tier="auto", prompt_cache_key="p",
        include=["reasoning.encrypted_content"], reasoning={"effort": "low", "summary": "auto"},
        extra_body={"client_metadata": {"a": "b"}})
    assert resp.model == "GPT-4O" and resp.instructions == "Be brief."
    assert resp.metadata == {"k": "v"}
    sent = proxy.fake.calls_to("chat/completion")[-1].body
    assert "Be brief." in sent["prompt"] and sent["thinking_enabled"] is True


# -- errors --------------------------------------------------------------------


async def post(proxy, body: bytes | dict, headers: dict | None = None) -> Reply:
    """A raw POST: ``headers`` default to the proxy's managed key."""
    return await raw_post(proxy.url + "/v1/responses", body,
                          proxy.headers() if headers is None else headers)


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    ({"model": "deepseek-chat"}, 400, "input"),
    ({"input": "hi"}, 400, "model"),
    ({"model": "no-such-model-xyz", "input": "hi"}, 400, "model"),
])
async def test_bad_requests_have_the_openai_error_shape(proxy, body, status, param):
    answer = await post(proxy, body)
    assert answer.status == status
    assert set(answer.json()["error"]) == {"message", "type", "code", "param", "request_id"}
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert answer.json()["error"]["param"] == param


@pytest.mark.parametrize("field, value", [
    ("conversation", "conv_123"), ("conversation", {"id": "conv_123"}),
    ("prompt", {"id": "pmpt_abc", "version": "2"})])
async def test_a_conversation_or_stored_prompt_is_not_found_not_ignored(proxy, field, value):
    """A conversation or a stored prompt names an object only the official
    API keeps: the turn ran without it (a 200 that ignored the history or the
    instructions the client meant), before any upstream work now a 404."""
    client = openai_client(proxy)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model="deepseek-chat", input="hi",
                                      extra_body={field: value})
    assert caught.value.body["param"] == field and "not found" in caught.value.body["message"]
    assert proxy.fake.calls_to("chat/completion") == []


async def test_bad_key_is_401(proxy_factory):
    proxy = await proxy_factory({"auth": {"allow_passthrough": False}})
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        answer = await post(proxy, {"model": "deepseek-chat", "input": "hi"}, headers)
        assert answer.status == 401 and answer.json()["error"]["type"] == "authentication_error"
    async with openai_client(proxy, key="wrong-key") as wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.responses.retrieve("resp_x")


async def test_full_pool_is_429_with_retry_after(proxy_factory, fake_upstream):
    proxy = await proxy_factory({"accounts": [{"email": "alice@example.com",
                                               "password": "pw-alice"}],
                                 "runtime": {"account_max_inflight": 1,
                                             "account_max_queue": 0}})
    fake_upstream.enqueue(Scripted(answer="slow " * 20, chunk_size=5,
                                   delivery=Delivery(chunk_delay=0.05)))
    async with openai_client(proxy) as api:
        stream = await api.responses.create(model="deepseek-chat", input="a", stream=True)
        first = await anext(aiter(stream))  # the only account is now leased
        assert first.type == "response.created"
        answer = await post(proxy, {"model": "deepseek-chat", "input": "b"})
        await stream.close()
    assert answer.status == 429 and int(answer.headers["Retry-After"]) >= 1
    assert answer.json()["error"]["type"] == "rate_limit_error"


# -- the store -----------------------------------------------------------------


async def test_stored_response_is_readable_only_by_its_creator(proxy_factory):
    proxy = await proxy_factory({"keys": ["test-key", OTHER_KEY]})
    proxy.fake.enqueue(Scripted(answer="kept"))
    async with openai_client(proxy) as owner, openai_client(proxy, key=OTHER_KEY) as other:
        created = await owner.responses.create(model="deepseek-chat", input="hi")
        again = await owner.responses.retrieve(created.id)
        assert again.id == created.id and again.output_text == "kept"
        with pytest.raises(openai.NotFoundError):
            await other.responses.retrieve(created.id)
        with pytest.raises(openai.BadRequestError):
            await other.responses.create(model="deepseek-chat", input="more",
                                         previous_response_id=created.id)


async def test_streamed_response_is_stored_and_store_false_is_not(proxy, api):
    proxy.fake.enqueue(Scripted(answer="streamed"), Scripted(answer="unstored"))
    async with api.responses.stream(model="deepseek-chat", input="hi") as s:
        final = await s.get_final_response()
    assert (await api.responses.retrieve(final.id)).output_text == "streamed"
    loose = await api.responses.create(model="deepseek-chat", input="hi", store=False)
    assert loose.output_text == "unstored"
    with pytest.raises(openai.NotFoundError):
        await api.responses.retrieve(loose.id)


async def test_previous_response_id_continues_the_conversation(proxy, api):
    proxy.fake.enqueue(Scripted(answer="Paris is the capital."), Scripted(answer="2.1 million"))
    first = await api.responses.create(model="deepseek-chat",
                                                 input="Capital of France?")
    second = await api.responses.create(model="deepseek-chat", input="Population?",
                                                  previous_response_id=first.id)
    assert second.output_text == "2.1 million"
    assert second.previous_response_id == first.id
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert prompt.index("Capital of France?") < prompt.index("Paris is the capital.") \
        < prompt.index("Population?")
    with pytest.raises(openai.BadRequestError) as err:
        await api.responses.create(model="deepseek-chat", input="x",
                                             previous_response_id="resp_missing")
    assert err.value.code == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError) as long_id:  # echoed whole, megabytes and all
        await api.responses.create(model="deepseek-chat", input="x",
                                   previous_response_id="resp_" + "x" * 100_000)
    assert len(long_id.value.message) < 200


async def test_input_items_list_what_a_stored_response_answered(proxy_factory):
    """The SDK's responses.input_items.list() got a 404 'no route': the items
    are listed in the API's item shapes, newest first, paged by cursor, and
    only to the response's creator."""
    proxy = await proxy_factory({"keys": ["test-key", OTHER_KEY]})
    proxy.fake.enqueue(Scripted(answer="Paris."), Scripted(answer="2.1 million"))
    async with openai_client(proxy) as api, openai_client(proxy, key=OTHER_KEY) as other:
        first = await api.responses.create(model="deepseek-chat", input="Capital?")
        second = await api.responses.create(
            model="deepseek-chat", previous_response_id=first.id,
            input=[{"role": "user", "content": [{"type": "input_text", "text": "People?"}]}])
        items = [item async for item in api.responses.input_items.list(second.id, limit=1)]
        assert [(i.type, i.role) for i in items] == [
            ("message", "user"), ("message", "assistant"), ("message", "user")]
        assert [i.content[0].text for i in items] == ["People?", "Paris.", "Capital?"]
        assert items[1].id == first.output[0].id and len({i.id for i in items}) == 3
        oldest = await api.responses.input_items.list(second.id, order="asc", limit=2)
        assert [i.id for i in oldest.data] == [items[2].id, items[1].id] and oldest.has_more
        with pytest.raises(openai.BadRequestError) as bad:
            await api.responses.input_items.list(second.id, limit=101)
        assert bad.value.param == "limit"
        with pytest.raises(openai.NotFoundError):
            await other.responses.input_items.list(second.id)


async def test_input_tokens_counts_what_create_would_send(proxy, api):
    """The SDK's responses.input_tokens.count() got a 405: the count is the
    prompt create would send, history and instructions included, and costs
    no upstream call."""
    proxy.fake.enqueue(Scripted(answer="Paris."))
    first = await api.responses.create(model="deepseek-chat", input="Capital?",
                                       instructions="Be brief.")
    counted = await api.responses.input_tokens.count(
        model="deepseek-chat", input="Capital?", instructions="Be brief.")
    assert counted.object == "response.input_tokens"
    assert counted.input_tokens == first.usage.input_tokens
    before = len(proxy.fake.calls)
    longer = await api.responses.input_tokens.count(input="People?",
                                                    previous_response_id=first.id)
    assert longer.input_tokens > counted.input_tokens and len(proxy.fake.calls) == before
    with pytest.raises(openai.BadRequestError) as bad:
        await api.responses.input_tokens.count(model="deepseek-chat", input=[])
    assert bad.value.param == "input"


async def test_a_background_response_is_kept_for_polling_even_with_store_false(proxy, api):
    """The API keeps a background response for its client to poll whatever
    store says; store=false made every poll a 404."""
    proxy.fake.enqueue(Scripted(answer="done in the background"), Scripted(answer="fg"))
    started = await api.responses.create(model="deepseek-chat", input="hi", background=True,
                                         store=False)
    assert started.background is True and started.store is False
    polled = await api.responses.retrieve(started.id)
    assert polled.status == "completed" and polled.output_text == "done in the background"
    foreground = await api.responses.create(model="deepseek-chat", input="hi", store=False)
    assert foreground.background is False
    with pytest.raises(openai.NotFoundError):
        await api.responses.retrieve(foreground.id)


async def test_stored_response_expires_after_the_live_ttl(proxy):
    """The plugin's routes on their own app, sharing the proxy's core, with a fake clock."""
    clock = Clock(0.0)
    api = PluginAPI(proxy.core, "openai")
    routes = ResponsesRoutes(api, ResponseStore(lambda: api.responses_ttl_seconds, clock=clock))
    app = web.Application()
    app.router.add_post("/v1/responses", wrap_handler(routes.create, api.errors.openai,
                                                      proxy.core))
    app.router.add_get("/v1/responses/{response_id}",
                       wrap_handler(routes.get, api.errors.openai, proxy.core))
    server = await start_server(app)
    local = openai_client(server, key=proxy.key)
    try:
        proxy.fake.enqueue(Scripted(answer="short-lived"))
        created = await local.responses.create(model="deepseek-chat", input="hi")
        clock.now += 899
        assert (await local.responses.retrieve(created.id)).output_text == "short-lived"
        clock.now += 1
        with pytest.raises(openai.NotFoundError):
            await local.responses.retrieve(created.id)
        assert proxy.core.config.responses.store_ttl_seconds == 900
    finally:
        await local.close()
        await server.close()


CALL_ITEM = {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fields, param", [
    ({"input": [{"role": "wizard", "content": "hi"}]}, "input[0].role"),
    ({"tools": [{"type": "function", "parameters": {"type": "object"}}]}, "tools[0].name"),
    ({"text": {"format": {"type": "json_schema", "name": "answer"}}}, "text.format.schema"),
])
async def test_malformed_items_tools_and_formats_are_400s_before_any_work(
        proxy, api, fields, param, stream):
    """Each used to be guessed at and the turn run (the schemaless format cost a
    whole turn before a 422); now a 400 names the field before a stream starts."""
    with pytest.raises(openai.BadRequestError) as info:
        await api.responses.create(**{"model": "deepseek-chat", "input": "hi", **fields},
                                   stream=stream)
    assert info.value.body["param"] == param and param in info.value.body["message"]
    assert proxy.fake.calls == [] and proxy.core.pool.inflight == 0


@pytest.mark.parametrize("call_id", ["call_1", "call_9"])
async def test_a_function_output_is_served_whether_or_not_its_call_is_in_the_input(
        proxy, api, call_id):
    """The conversion is lenient (prompt-compat 4.2): an output whose call is
    not in the input (a trimmed history) is still answered."""
    proxy.fake.enqueue(Scripted(answer="done"))
    answer = await api.responses.create(model="deepseek-chat", input=[
        {"role": "user", "content": "look it up"}, CALL_ITEM,
        {"type": "function_call_output", "call_id": call_id, "output": "42"}])
    assert answer.output_text == "done"
    assert "42" in proxy.fake.calls_to("chat/completion")[-1].body["prompt"]


@pytest.mark.parametrize("fields, param", [
    ({"include": ["message.output_text.logprobs"]}, "include"),
    ({"top_logprobs": 5}, "top_logprobs"), ({"include": "reasoning"}, "include"),
])
async def test_asking_for_logprobs_is_a_400_naming_the_field(proxy, fields, param):
    """As on Chat: the answer's log probabilities were a silent empty list."""
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).responses.create(model="deepseek-chat", input="hi",
                                                    **fields)
    assert info.value.param == param and proxy.fake.calls == []
    proxy.fake.enqueue(Scripted(answer="fine"))
    answer = await openai_client(proxy).responses.create(
        model="deepseek-chat", input="hi", include=["reasoning.encrypted_content"],
        top_logprobs=0)
    assert answer.output_text == "fine"


async def test_an_item_reference_stands_for_the_item_it_names(proxy, api):
    """An item_reference was read as a loose item without text and dropped, so
    the message it named never reached the model; it now stands for the item
    of that id in the conversation (the stored history included), and one
    naming no item is a 404 before any upstream work, as the API answers."""
    proxy.fake.enqueue(Scripted(answer="Paris is the capital."), Scripted(answer="yes"))
    first = await api.responses.create(model="deepseek-chat", input=[
        {"type": "message", "id": "msg_question", "role": "user",
         "content": [{"type": "input_text", "text": "Capital of France?"}]}])
    second = await api.responses.create(
        model="deepseek-chat", previous_response_id=first.id,
        input=[{"type": "item_reference", "id": first.output[0].id},
               {"type": "item_reference", "id": "msg_question"},
               {"role": "user", "content": "Sure?"}])
    assert second.output_text == "yes"
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert prompt.count("Paris is the capital.") == 2 and prompt.count("Capital of France?") == 2
    listed = [item async for item in api.responses.input_items.list(second.id, order="asc")]
    assert [item.type for item in listed] == ["message"] * 5
    assert listed[3].content[0].text == "Capital of France?"
    calls = len(proxy.fake.calls)
    with pytest.raises(openai.NotFoundError) as missing:
        await api.responses.create(model="deepseek-chat", input=[
            {"role": "user", "content": "hi"}, {"type": "item_reference", "id": "msg_gone"}],
            stream=True)
    assert missing.value.param == "input[1].id" and "msg_gone" in missing.value.message
    assert len(proxy.fake.calls) == calls and proxy.core.pool.inflight == 0


async def test_cancel_answers_a_background_response_and_refuses_others(proxy, api):
    """The SDK's responses.cancel() got a 404 'no route'. A background response
    is finished when it is created here, so cancelling it answers it unchanged;
    one created without background is a 400 as in the API, an unknown id a 404."""
    proxy.fake.enqueue(Scripted(answer="done"), Scripted(answer="fg"))
    started = await api.responses.create(model="deepseek-chat", input="hi", background=True)
    cancelled = await api.responses.cancel(started.id)
    assert cancelled.id == started.id and cancelled.status == "completed"
    assert cancelled.output_text == "done"
    foreground = await api.responses.create(model="deepseek-chat", input="hi")
    with pytest.raises(openai.BadRequestError) as refused:
        await api.responses.cancel(foreground.id)
    assert "background" in refused.value.message
    with pytest.raises(openai.NotFoundError):
        await api.responses.cancel("resp_missing")


async def test_retrieving_a_stored_response_as_a_stream_is_a_400_naming_stream(proxy, api):
    """GET ?stream=true was answered with the JSON object, which the SDK's
    retrieve(stream=True) read as events and failed on (TypeError); the events
    are not kept, so the parameter is refused by name."""
    proxy.fake.enqueue(Scripted(answer="kept"))
    kept = await api.responses.create(model="deepseek-chat", input="hi", background=True)
    with pytest.raises(openai.BadRequestError) as refused:
        await api.responses.retrieve(kept.id, stream=True)
    assert refused.value.param == "stream"
    assert (await api.responses.retrieve(kept.id)).output_text == "kept"


async def test_input_items_page_to_the_end_when_an_item_id_repeats(proxy, api):
    """A client resending its first message beside previous_response_id stored
    two items of one id; paging after that id went back to its first place,
    so the SDK's auto-paging in ascending order never ended. Every listed id
    is now unique, so the pages walk the list once."""
    proxy.fake.enqueue(Scripted(answer="one"), Scripted(answer="two"))
    message = {"type": "message", "id": "msg_a", "role": "user",
               "content": [{"type": "input_text", "text": "q"}]}
    first = await api.responses.create(model="deepseek-chat", input=[message])
    second = await api.responses.create(model="deepseek-chat", previous_response_id=first.id,
                                        input=[message, {"role": "user", "content": "again"}])
    listed = []
    async for item in api.responses.input_items.list(second.id, limit=1, order="asc"):
        listed.append(item)
        assert len(listed) <= 4, "paging went round in a circle"
    assert len({item.id for item in listed}) == 4 and listed[0].id == "msg_a"
    assert [item.content[0].text for item in listed] == ["q", "one", "q", "again"]


async def test_an_image_in_a_developer_message_is_attached_not_dropped(proxy, api):
    """Responses takes images and files in any role's content; a developer
    message's image was dropped with its non-text parts (the model followed
    the words about a picture it never saw). It is uploaded like a user's."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    proxy.fake.enqueue(Scripted(answer="styled"))
    answer = await api.responses.create(model="deepseek-chat", input=[
        {"role": "developer", "content": [{"type": "input_text", "text": "Match this style:"},
                                          {"type": "input_image", "image_url": url}]},
        {"role": "user", "content": "Write a title."}])
    assert answer.output_text == "styled"
    [stored] = proxy.fake.files.values()
    assert stored.content == png and len(proxy.fake.calls_to("file/upload_file")) == 1
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert f"Match this style:\n[image: image/png, attached as {stored.id}]" in prompt


async def test_an_item_reference_reaches_the_stored_response_that_holds_it(proxy_factory):
    """A client that stores its answers (the AI SDK's default store: true)
    sends each past answer as an item_reference and no previous_response_id;
    the references were dropped, so the history lost every answer. An id this
    server made names its response, which is read (the caller's own only)."""
    proxy = await proxy_factory({"keys": ["test-key", OTHER_KEY]})
    proxy.fake.enqueue(Scripted(answer="Paris is the capital."), Scripted(answer="Yes."))
    async with openai_client(proxy) as api, openai_client(proxy, key=OTHER_KEY) as other:
        first = await api.responses.create(model="deepseek-chat", input="Capital of France?")
        [asked] = (await api.responses.input_items.list(first.id)).data
        second = await api.responses.create(model="deepseek-chat", input=[
            {"type": "item_reference", "id": asked.id},
            {"type": "item_reference", "id": first.output[0].id},
            {"role": "user", "content": "Sure?"}])
        assert second.output_text == "Yes."
        prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
        assert prompt.index("Capital of France?") < prompt.index("Paris is the capital.") \
            < prompt.index("Sure?")
        calls = len(proxy.fake.calls)
        with pytest.raises(openai.NotFoundError) as foreign:
            await other.responses.create(model="deepseek-chat", input=[
                {"type": "item_reference", "id": first.output[0].id},
                {"role": "user", "content": "Sure?"}])
        assert first.output[0].id in foreign.value.message and len(proxy.fake.calls) == calls


class CountedStore(ResponseStore):
    """The plugin's store, counting the responses read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read: list[str] = []

    async def fetch(self, owner: str, response_id: str):
        self.read.append(response_id)
        return await super().fetch(owner, response_id)


async def test_a_conversation_of_references_costs_one_read(proxy):
    """Each stored answer's input holds the earlier references resolved, so
    the newest one's response is read and the rest found there: a long
    conversation sent as references is not one store read per past answer."""
    api = PluginAPI(proxy.core, "openai")
    store = CountedStore(lambda: api.responses_ttl_seconds)
    routes = ResponsesRoutes(api, store)
    app = web.Application()
    app.router.add_post("/v1/responses", wrap_handler(routes.create, api.errors.openai,
                                                      proxy.core))
    server = await start_server(app)
    local = openai_client(server, key=proxy.key)
    try:
        history: list[dict] = []
        for turn in range(4):
            proxy.fake.enqueue(Scripted(answer=f"answer {turn}"))
            history.append({"role": "user", "content": f"question {turn}"})
            store.read.clear()
            answer = await local.responses.create(model="deepseek-chat", input=history)
            assert len(store.read) == min(turn, 1)
            history.append({"type": "item_reference", "id": answer.output[0].id})
        prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
        assert all(f"answer {n}" in prompt for n in range(3))
    finally:
        await local.close()
        await server.close()
