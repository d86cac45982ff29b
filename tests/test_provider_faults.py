"""A provider that misbehaves on the wire: chunks of the wrong shape, answers
that are not event streams, redirects, error bodies in pieces. Each reaches
the client as a provider failure in its family's shape (a 502 that the route
may fall back from), never as an internal error or a leaked secret."""

from __future__ import annotations

import json

import aiohttp
import anthropic
import openai
import pytest
from admin_util import admin_for

from ds2proxy.testing import Scripted
from ds2proxy.testing.provider_replies import ProviderReply

from provider_util import PROVIDER_KEY, PROVIDER_MODEL, fake_provider, provider_config  # noqa: F401

USER = [{"role": "user", "content": "hi"}]


def claude_client(routed) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=routed.url + "/anthropic", api_key=routed.key,
                                    max_retries=0)


async def claude_streamed(routed) -> anthropic.types.Message:
    """The message an Anthropic client streams from the provider's next reply."""
    async with claude_client(routed).messages.stream(
            model=PROVIDER_MODEL, max_tokens=100, messages=USER,
            tools=[{"name": "get_weather", "input_schema": {"type": "object"}}]) as stream:
        return await stream.get_final_message()


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


def completion(message: dict, finish: str) -> bytes:
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": [
        {"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 5}}).encode()


async def test_a_provider_that_ignores_stream_is_still_served(routed):
    """One chat.completion object (calls without an index) instead of chunks."""
    routed.provider.enqueue(ProviderReply(raw=completion({
        "role": "assistant", "content": "Checking.", "reasoning_content": "plan",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                          "arguments": '{"city": "Oslo"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather",
                                                          "arguments": '{"city": "Rome"}'}}]},
        "tool_calls"), content_type="application/json"))
    message = await claude_streamed(routed)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert [b.input for b in message.content if b.type == "tool_use"] == [{"city": "Oslo"},
                                                                          {"city": "Rome"}]
    assert (message.stop_reason, message.usage.output_tokens) == ("tool_use", 5)


async def test_an_event_stream_labelled_as_plain_text_is_still_streamed(proxy_factory):
    """What a body is, is judged by its first bytes: a stream labelled
    text/plain is relayed as it comes, not held until it ends."""
    import asyncio

    from aiohttp import web

    from ds2proxy.testing.fake_provider import FakeProvider

    class Mislabelled(FakeProvider):
        go_on = asyncio.Event()

        async def chat(self, request):
            response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
            await response.prepare(request)
            await response.write(sse({"choices": [{"index": 0, "delta": {"content": "first "}}]}))
            await self.go_on.wait()  # the client must have the first piece by now
            await response.write(sse({"choices": [{"index": 0, "delta": {"content": "second"},
                                                   "finish_reason": "stop"}]}, "[DONE]"))
            return response

    async with Mislabelled([PROVIDER_MODEL]) as provider:
        proxy = await proxy_factory(provider_config(provider))
        text = []
        async with asyncio.timeout(30):  # held until the end, the first piece never comes
            stream = await client(proxy).chat.completions.create(
                model=PROVIDER_MODEL, messages=USER, stream=True)
            async for chunk in stream:
                text += [c.delta.content or "" for c in chunk.choices]
                if "".join(text) == "first ":
                    Mislabelled.go_on.set()
    assert "".join(text) == "first second"


async def test_a_json_error_with_status_200_is_a_provider_failure_without_the_key(routed):
    body = json.dumps({"error": {"message": f"quota gone for {PROVIDER_KEY}"}}).encode()
    routed.provider.enqueue(ProviderReply(raw=body, content_type="application/json"))
    with pytest.raises(openai.APIStatusError) as info:
        await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert info.value.status_code == 502 and "reported an error" in info.value.message
    assert PROVIDER_KEY not in json.dumps(info.value.body)


async def test_a_web_page_with_status_200_is_named_and_the_route_moves_on(routed):
    page = b"<html><body>Please sign in</body></html>"
    routed.provider.enqueue(ProviderReply(raw=page, content_type="text/html"))
    with pytest.raises(openai.APIStatusError) as info:
        await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER,
                                                     stream=True)
    assert info.value.status_code == 502 and "text/html" in info.value.message
    routed.provider.enqueue(ProviderReply(raw=page, content_type="text/html"))
    routed.fake.enqueue(Scripted(answer="the pool again"))
    raw = await client(routed).chat.completions.with_raw_response.create(
        model="deepseek-reasoner", messages=USER)
    assert raw.parse().choices[0].message.content == "the pool again"
    assert raw.headers["X-DS2Proxy-Served-By"] == "pool"


async def test_a_redirect_is_not_followed_with_the_credentials(proxy_factory):
    """aiohttp drops Authorization on a redirect to another origin, but not a
    vendor's key header: the provider's redirect must not be followed at all."""
    from aiohttp import web

    from ds2proxy.testing.fake_provider import FakeProvider

    class Redirecting(FakeProvider):
        target = ""

        async def chat(self, request):
            raise web.HTTPTemporaryRedirect(self.target + "/chat/completions")

    header_secret = "hdr-secret-0123456789"
    async with FakeProvider([PROVIDER_MODEL]) as elsewhere, \
            Redirecting([PROVIDER_MODEL], api_key=PROVIDER_KEY) as provider:
        provider.target = elsewhere.base_url
        doc = provider_config(provider, headers={"x-api-key": header_secret})
        proxy = await proxy_factory(doc)
        with pytest.raises(openai.APIStatusError) as info:
            await client(proxy).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
        assert len(provider.calls) == 1
        assert elsewhere.calls == []
    assert (info.value.status_code, info.value.code) == (502, "provider_redirected")
    assert header_secret not in json.dumps(info.value.body)


async def test_an_error_body_in_several_reads_keeps_the_providers_words(routed):
    body = json.dumps({"error": {"message": "temperature must be at most 2",
                                 "type": "invalid_request_error"}}).encode()
    routed.provider.enqueue(ProviderReply(raw=body, status=400, write_bytes=16,
                                          chunk_delay=0.05, content_type="application/json"))
    with pytest.raises(openai.BadRequestError) as info:
        await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert "temperature must be at most 2" in info.value.message


ARGUMENTS = {"not JSON": ("city: Oslo", {"input": "city: Oslo"}),
             "a list": ("[1, 2]", {"input": [1, 2]}),
             "cut short": ('{"city": "Os', {"input": '{"city": "Os'}),
             "an object in pieces": ('{"city": "Oslo", "days": 3}', {"city": "Oslo", "days": 3})}


@pytest.mark.parametrize("arguments, expected", ARGUMENTS.values(), ids=ARGUMENTS.keys())
async def test_claude_streams_a_providers_tool_input_as_its_message_has_it(routed, arguments,
                                                                         expected):
    """The official client parses input_json_delta as JSON: a provider's
    model may write arguments that are not an object, which streamed as they
    came made the client raise; the stream now carries what the non-stream
    message carries."""
    claude = claude_client(routed)
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    inputs = []
    for stream in (True, False):
        routed.provider.enqueue(ProviderReply(tool_calls=[("get_weather", arguments)],
                                              chunk_chars=3))
        if stream:
            async with claude.messages.stream(model=PROVIDER_MODEL, max_tokens=100,
                                              messages=USER, tools=tools) as events:
                message = await events.get_final_message()
        else:
            message = await claude.messages.create(model=PROVIDER_MODEL, max_tokens=100,
                                                   messages=USER, tools=tools)
        (use,) = [b for b in message.content if b.type == "tool_use"]
        inputs.append(use.input)
    assert inputs == [expected, expected]


def call_delta(arguments: str, *, index: int | None = None, ident: str = "",
               name: str = "") -> dict:
    call: dict = {"function": {"arguments": arguments}}
    if index is not None:
        call["index"] = index
    if ident:
        call.update(id=ident, type="function")
        call["function"]["name"] = name
    return {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}


PARALLEL = {
    # Ollama (and gateways in front of it) number every call of a batch 0.
    "one index for all": [call_delta('{"city": ', index=0, ident="c1", name="get_weather"),
                          call_delta('"Oslo"}', index=0),
                          call_delta('{"city": "Rome"}', index=0, ident="c2",
                                     name="get_weather")],
    # Older builds send no index at all.
    "no index": [call_delta('{"ci', ident="c1", name="get_weather"),
                 call_delta('ty": "Oslo"}'),
                 call_delta('{"city": "Rome"}', ident="c2", name="get_weather")],
    # Some gateways mint a new id for every fragment of one call.
    "an id per piece": [call_delta('{"city": ', index=0, ident="c1", name="get_weather"),
                        {"choices": [{"index": 0, "delta": {"tool_calls": [
                            {"index": 0, "id": "x9", "function": {"arguments": '"Oslo"}'}}]}}]},
                        call_delta('{"city": "Rome"}', index=1, ident="c2",
                                   name="get_weather")],
    # vLLM repeats the call's id on every fragment.
    "id on every piece": [call_delta('{"city": ', index=0, ident="c1", name="get_weather"),
                          call_delta('"Oslo"}', index=0, ident="c1", name="get_weather"),
                          call_delta('{"city": "Rome"}', index=1, ident="c2",
                                     name="get_weather")],
}


FINISH_CALLS = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
WEATHER_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


async def chat_calls(routed) -> list[tuple[str, str, object]]:
    """(id, name, arguments) of each call a chat client reads from the provider's next reply."""
    answer = await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER,
                                                          tools=WEATHER_TOOLS)
    return [(c.id, c.function.name, json.loads(c.function.arguments))
            for c in answer.choices[0].message.tool_calls]


@pytest.mark.parametrize("deltas", PARALLEL.values(), ids=PARALLEL.keys())
async def test_parallel_calls_stay_apart_however_the_provider_numbers_them(routed, deltas):
    routed.provider.enqueue(ProviderReply(raw=sse(*deltas, FINISH_CALLS, "[DONE]")))
    assert await chat_calls(routed) == [("c1", "get_weather", {"city": "Oslo"}),
                                        ("c2", "get_weather", {"city": "Rome"})]


async def test_a_configured_authorization_header_is_the_only_one_sent(proxy_factory):
    """With an api_key and an ``authorization`` header in another case, both
    went out (two Authorization headers); the test button sends the header
    alone, so the button passed while chats failed."""
    from ds2proxy.testing.fake_provider import FakeProvider

    class Counting(FakeProvider):
        sent: list[list[str]] = []

        async def chat(self, request):
            self.sent.append(request.headers.getall("Authorization", []))
            return await super().chat(request)

    async with Counting([PROVIDER_MODEL], api_key=PROVIDER_KEY) as provider:
        doc = provider_config(provider, api_key="sk-stale-key-0000",
                              headers={"authorization": f"Bearer {PROVIDER_KEY}"})
        proxy = await proxy_factory(doc)
        answer = await client(proxy).chat.completions.create(model=PROVIDER_MODEL,
                                                             messages=USER)
        async with aiohttp.ClientSession() as http:
            admin = await admin_for(proxy, http)
            button = await admin.ok("POST", "/admin/providers/prov/test",
                                    json={"model": PROVIDER_MODEL})
    assert answer.choices[0].message.content == "Hello from the provider."
    assert provider.sent == [[f"Bearer {PROVIDER_KEY}"], [f"Bearer {PROVIDER_KEY}"]]
    assert button["success"], button


async def test_done_without_a_finish_reason_ends_the_answer_well(routed):
    """Some providers never send a finish_reason; their [DONE] is the end. A
    complete answer used to end in an in-band 502 after all its text."""
    import ollama
    pieces = [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
              for t in ("All ", "there.")]
    for _ in range(2):
        routed.provider.enqueue(ProviderReply(raw=sse(*pieces, "[DONE]")))
    stream = await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER,
                                                          stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "All there."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    local = ollama.AsyncClient(host=routed.url, headers=routed.headers())
    reply = await local.chat(model=PROVIDER_MODEL, messages=USER)
    assert (reply.message.content, reply.done_reason) == ("All there.", "stop")


async def test_a_stream_cut_without_done_or_finish_is_still_an_error(routed):
    pieces = [{"choices": [{"index": 0, "delta": {"content": "Half"}}]}]
    routed.provider.enqueue(ProviderReply(raw=sse(*pieces)))
    with pytest.raises(openai.APIStatusError) as info:
        await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert "ended its answer early" in info.value.message


@pytest.mark.parametrize("status", [400, 200])
async def test_a_key_quoted_at_the_cut_of_a_long_message_is_still_scrubbed(routed, status):
    """The provider's words were cut to 300 characters before the key was
    scrubbed out, so a key straddling the cut left its first part behind."""
    words = "x" * 290 + " " + PROVIDER_KEY + " is not valid for this model"
    body = json.dumps({"error": {"message": words}}).encode()
    routed.provider.enqueue(ProviderReply(raw=body if status != 200 else sse(
        {"error": {"message": words}}), status=status,
        content_type="application/json" if status != 200 else "text/event-stream"))
    with pytest.raises(openai.APIStatusError) as info:
        await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert PROVIDER_KEY[:8] not in json.dumps(info.value.body)
    record = routed.core.usage.store
    await record.flush()
    rows, _ = await record.requests({}, 10, 0)
    assert PROVIDER_KEY[:8] not in json.dumps(rows)


async def test_a_gateways_max_tokens_reaches_claude_as_max_tokens(routed):
    routed.provider.enqueue(ProviderReply(raw=sse(
        {"choices": [{"index": 0, "delta": {"content": "cut he"}, "finish_reason": "MAX_TOKENS"}]},
        "[DONE]")))
    claude = claude_client(routed)
    message = await claude.messages.create(model=PROVIDER_MODEL, max_tokens=3, messages=USER)
    assert (message.content[0].text, message.stop_reason) == ("cut he", "max_tokens")


def tool_chunk(*calls: dict) -> dict:
    return {"choices": [{"index": 0, "delta": {"tool_calls": list(calls)}}]}


OSLO = [("c1", "get_weather", {"city": "Oslo"})]
LATE_NAMES = {
    # An opening delta with an empty name, the name with the arguments after.
    "empty name first": (
        [tool_chunk({"index": 0, "id": "c1", "function": {"name": "", "arguments": ""}}),
         tool_chunk({"index": 0, "id": "c1", "function": {"name": "get_weather",
                                                          "arguments": '{"city": "Oslo"}'}})],
        OSLO),
    # Arguments before the name.
    "arguments first": (
        [tool_chunk({"index": 0, "id": "c1", "function": {"arguments": '{"city": '}}),
         tool_chunk({"index": 0, "function": {"name": "get_weather", "arguments": '"Oslo"}'}})],
        OSLO),
    # Empty strings for the id and name of every later fragment.
    "empty strings later": (
        [tool_chunk({"index": 0, "id": "c1", "function": {"name": "get_weather",
                                                          "arguments": '{"city"'}}),
         tool_chunk({"index": 0, "id": "", "function": {"name": "", "arguments": ': "Oslo"}'}})],
        OSLO),
    # Whole calls with neither index nor id.
    "no index nor id": (
        [tool_chunk({"function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}),
         tool_chunk({"function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}})],
        [("call_0", "get_weather", {"city": "Oslo"}),
         ("call_1", "get_weather", {"city": "Rome"})]),
}


@pytest.mark.parametrize("deltas, expected", LATE_NAMES.values(), ids=LATE_NAMES.keys())
async def test_a_call_named_late_keeps_its_name_and_arguments(routed, deltas, expected):
    """A call used to start at its first delta with whatever name that had
    (none), so the name that came later was lost and clients dropped the call."""
    for _ in range(2):
        routed.provider.enqueue(ProviderReply(raw=sse(*deltas, FINISH_CALLS, "[DONE]")))
    assert await chat_calls(routed) == expected
    message = await claude_streamed(routed)
    assert [(b.name, b.input) for b in message.content if b.type == "tool_use"] == [
        (name, args) for _, name, args in expected]


async def test_a_json_error_labelled_as_an_event_stream_is_read_as_json(routed):
    body = json.dumps({"error": {"message": "model is overloaded"}}).encode()
    routed.provider.enqueue(ProviderReply(raw=body))  # labelled text/event-stream
    with pytest.raises(openai.APIStatusError) as info:
        await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert info.value.status_code == 502 and "reported an error" in info.value.message


async def test_a_labelled_stream_opening_with_a_byte_order_mark_is_still_streamed(routed):
    routed.provider.enqueue(ProviderReply(raw="\ufeff".encode() + sse(
        {"choices": [{"index": 0, "delta": {"content": "after the mark"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, "[DONE]")))
    answer = await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    assert answer.choices[0].message.content == "after the mark"


async def test_content_given_as_parts_is_read_with_its_thinking(routed):
    """Mistral's reasoning models stream content as a list of parts, thinking
    included; a list was not text, so the whole answer came back empty."""
    def part_chunk(*parts: dict, finish: str | None = None) -> dict:
        return {"choices": [{"index": 0, "delta": {"content": list(parts)},
                             "finish_reason": finish}]}
    routed.provider.enqueue(ProviderReply(raw=sse(
        part_chunk({"type": "thinking", "thinking": [{"type": "text", "text": "Let me see."}]}),
        part_chunk({"type": "text", "text": "It is "}),
        part_chunk({"type": "text", "text": "four."}, finish="stop"), "[DONE]")))
    answer = await client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    message = answer.choices[0].message
    assert (message.content, message.model_extra.get("reasoning_content")) == (
        "It is four.", "Let me see.")
