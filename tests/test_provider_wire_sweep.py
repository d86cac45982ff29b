"""A provider's event stream and errors as servers really write them, on a
real port with the official client: the event-stream format's other line
ends and spacing, what follows [DONE], lines without end, error bodies
that are not OpenAI's JSON, and a client that leaves mid-answer."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest
from aiohttp import web

from ds2proxy.testing.clients import openai_client
from ds2proxy.testing.provider_replies import ProviderReply

from provider_util import PROVIDER_KEY, PROVIDER_MODEL, fake_provider, provider_config  # noqa: F401

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def routed(proxy_factory, fake_provider):  # noqa: F811
    proxy = await proxy_factory({**provider_config(fake_provider), "health": {"enabled": False}})
    proxy.provider = fake_provider
    return proxy


def piece(text: str) -> bytes:
    """One content chunk without a finish reason (its [DONE] ends the answer)."""
    return json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode()


async def streamed_text(proxy) -> str:
    stream = await openai_client(proxy).chat.completions.create(
        model=PROVIDER_MODEL, messages=USER, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


STREAMS = {
    # "data:" without its space is the same field: the [DONE] was missed and
    # a whole answer ended in "provider ended its answer early".
    "no space after data:": b"data:" + piece("All ") + b"\n\ndata:" + piece("there.")
                            + b"\n\ndata:[DONE]\n\n",
    # CR alone ends a line too: nothing was read, a 502.
    "CR line ends": b"data: " + piece("All ") + b"\r\rdata: " + piece("there.")
                    + b"\r\rdata: [DONE]\r\r",
    "CRLF line ends": b"data: " + piece("All ") + b"\r\n\r\ndata: " + piece("there.")
                      + b"\r\n\r\ndata: [DONE]\r\n\r\n",
    # What followed [DONE] in the same read was added to the answer.
    "text after [DONE]": b"data: " + piece("All there.") + b"\n\ndata: [DONE]\n\ndata: "
                         + piece(" And more.") + b"\n\n",
    "[DONE] without a line end": b"data: " + piece("All there.") + b"\n\ndata: [DONE]",
}


@pytest.mark.parametrize("raw", STREAMS.values(), ids=STREAMS.keys())
async def test_every_event_stream_spelling_ends_at_its_done(routed, raw):
    routed.provider.enqueue(ProviderReply(raw=raw, write_bytes=7))
    assert await streamed_text(routed) == "All there."
    assert routed.core.providers.inflight("prov") == 0


@pytest.mark.parametrize("raw", [b"data: " + b"x" * (17 << 20), b" " * (17 << 20)],
                         ids=["a line without end", "only blanks"])
async def test_a_stream_without_line_ends_is_cut_off_not_held_whole(routed, raw):
    """Every byte of such a line used to be held, however many came."""
    routed.provider.enqueue(ProviderReply(raw=raw))
    with pytest.raises(openai.APIStatusError) as info:
        await streamed_text(routed)
    assert info.value.status_code == 502
    assert "too long" in info.value.message or "only blanks" in info.value.message
    assert routed.core.providers.inflight("prov") == 0


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def done(*chunks: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) \
        + b"data: [DONE]\n\n"


@pytest.mark.parametrize("stream", [False, True])
async def test_arguments_sent_as_an_object_reach_the_client_as_json_text(routed, stream):
    """A gateway that sends ``arguments`` as an object: the call went out
    with empty arguments."""
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
    routed.provider.enqueue(ProviderReply(raw=done(
        {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})))
    chat = openai_client(routed).chat.completions
    if stream:
        chunks = [c async for c in await chat.create(model=PROVIDER_MODEL, messages=USER,
                                                     tools=TOOLS, stream=True) if c.choices]
        arguments = "".join(d.function.arguments or "" for c in chunks
                            for d in c.choices[0].delta.tool_calls or ())
    else:
        answer = await chat.create(model=PROVIDER_MODEL, messages=USER, tools=TOOLS)
        arguments = answer.choices[0].message.tool_calls[0].function.arguments
    assert json.loads(arguments) == {"city": "Rome"}


@pytest.mark.parametrize("delta", [{"content": 5}, {"reasoning_content": ["x"]},
                                   {"tool_calls": [{"index": 0, "id": "c", "function": {
                                       "name": "get_weather", "arguments": 7}}]}],
                         ids=["content", "reasoning", "arguments"])
async def test_text_of_the_wrong_type_is_a_malformed_chunk_not_silence(routed, delta):
    """Each used to be dropped: the client got an empty answer as if whole."""
    routed.provider.enqueue(ProviderReply(raw=done({"choices": [{"index": 0, "delta": delta}]})))
    with pytest.raises(openai.APIStatusError) as info:
        await openai_client(routed).chat.completions.create(model=PROVIDER_MODEL,
                                                            messages=USER, tools=TOOLS)
    assert info.value.status_code == 502 and "malformed" in info.value.message


ERRORS = {
    "FastAPI detail": (b'{"detail": "model \'qwen-max\' is not loaded"}', "application/json",
                       "model 'qwen-max' is not loaded"),
    "gateway message": (b'{"message": "model \'qwen-max\' is not loaded"}', "application/json",
                        "model 'qwen-max' is not loaded"),
    "plain text": (b"model 'qwen-max' is not loaded\n", "text/plain",
                   "model 'qwen-max' is not loaded"),
    "plain text quoting the key": (f"bad key {PROVIDER_KEY}, model not loaded".encode(),
                                   "text/plain", "bad key [redacted], model not loaded"),
    "web page": (f"<html><title>Bad</title>{PROVIDER_KEY}</html>".encode(), "text/html",
                 "HTTP 400"),
    # A cut body may end in part of the key: no words read from it.
    "huge text ending in the key": (b" " * 8180 + PROVIDER_KEY.encode(), "text/plain",
                                    "HTTP 400"),
    "huge JSON": (json.dumps({"error": {"message": "x" * 9000}}).encode(), "application/json",
                  "HTTP 400"),
}


@pytest.mark.parametrize("raw, kind, said", ERRORS.values(), ids=ERRORS.keys())
async def test_a_refusal_in_any_shape_gives_its_words_and_never_the_key(routed, raw, kind,
                                                                        said):
    """Only OpenAI's error JSON was read: a server answering FastAPI's
    ``detail`` or plain text gave "provider answered 400: HTTP 400"."""
    routed.provider.enqueue(ProviderReply(raw=raw, status=400, content_type=kind))
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(routed).chat.completions.create(model=PROVIDER_MODEL, messages=USER)
    message = info.value.body["message"]
    assert message == f"provider prov answered 400: {said}"
    assert PROVIDER_KEY[:10] not in message


async def test_a_client_that_leaves_mid_answer_closes_the_provider_connection(
        proxy_factory, aiohttp_server):
    """A provider that would stream forever: once the client has gone, the
    provider's connection is closed (its write fails) and the slot is free."""
    closed, stop = asyncio.Event(), asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while not stop.is_set():  # (stop: only to end the test if it failed)
                await response.write(b"data: " + piece("word ") + b"\n\n")
                await asyncio.sleep(0.01)
        finally:
            closed.set()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    port = (await aiohttp_server(app)).port
    try:
        proxy = await proxy_factory({"providers": [{
            "name": "prov", "base_url": f"http://127.0.0.1:{port}/v1", "models": ["endless"]}]})
        async with aiohttp.ClientSession() as http:
            async with http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                                 json={"model": "endless", "messages": USER,
                                       "stream": True}) as response:
                assert b"word" in await response.content.readuntil(b"\n\n")
        await asyncio.wait_for(closed.wait(), 10)
        assert proxy.core.providers.inflight("prov") == 0
    finally:
        stop.set()
