"""A bug that strikes mid-stream still ends every family's stream with its
own error event (never a silent cut the client takes for a dropped
connection), is logged with its traceback, and releases the lease."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest

from ds2proxy.testing import Delivery, Scripted
from ds2proxy.upstream.stream_parser import StreamParser

HELLO_OPENAI = {"model": "deepseek-chat", "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}
CASES = {
    "openai-chat": ("/v1/chat/completions", HELLO_OPENAI),
    "anthropic": ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 64,
                                   "stream": True,
                                   "messages": [{"role": "user", "content": "hi"}]}),
    "responses": ("/v1/responses", {"model": "deepseek-chat", "stream": True, "input": "hi"}),
    "gemini": ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
               {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
}


def break_parser_after(monkeypatch: pytest.MonkeyPatch, lines: int) -> None:
    """The stream parser raises a plain bug once a stream passes ``lines`` lines
    (the batch entry point: token lines never reach the per-line methods)."""
    feed = StreamParser.feed_lines
    seen = {"n": 0}

    def broken(self, batch):
        seen["n"] += len(batch)
        if seen["n"] > lines:
            raise ValueError("a bug in the parser")
        return feed(self, batch)

    monkeypatch.setattr(StreamParser, "feed_lines", broken)


def data_payloads(body: bytes) -> list:
    payloads = []
    for line in body.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            payloads.append(json.loads(line[6:]))
    return payloads


def ends_in_error(family: str, payloads: list) -> bool:
    last = payloads[-1]
    if family == "openai-chat":
        return "error" in last and last["error"]["message"].startswith("internal error")
    if family == "anthropic":
        return last["type"] == "error" and last["error"]["type"] == "api_error"
    if family == "responses":
        return last["type"] == "response.failed" and last["response"]["error"]["message"]
    return last["error"]["code"] == 500 and last["error"]["status"] == "INTERNAL"


@pytest.mark.parametrize("family", list(CASES))
async def test_a_bug_after_the_first_byte_ends_with_the_familys_error_event(
        proxy, monkeypatch, caplog, family):
    path, body = CASES[family]
    # Paced, so that the first chunks reach the client in reads of their own
    # before the line that trips the bug (lines of one read go out together).
    proxy.fake.enqueue(Scripted(answer="a long answer " * 20, chunk_size=2,
                                delivery=Delivery(chunk_delay=0.005)))
    break_parser_after(monkeypatch, 12)
    caplog.set_level(logging.ERROR, logger="ds2proxy.pipeline")
    headers = {**proxy.headers(), "x-goog-api-key": proxy.key}
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + path, json=body, headers=headers) as resp:
            assert resp.status == 200
            raw = await resp.read()
    payloads = data_payloads(raw)
    assert len(payloads) > 1 and ends_in_error(family, payloads), payloads[-3:]
    assert any(r.exc_info and "a bug in the parser" in str(r.exc_info[1])
               for r in caplog.records)
    assert proxy.core.pool.inflight == 0


async def test_a_bug_before_any_output_is_a_plain_500(proxy, monkeypatch):
    break_parser_after(monkeypatch, 0)
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", json=HELLO_OPENAI,
                             headers=proxy.headers()) as resp:
            assert resp.status == 500
            error = (await resp.json())["error"]
    assert error["message"] == "internal error: ValueError"
    assert proxy.core.pool.inflight == 0


async def test_a_stream_that_breaks_before_any_output_fails_over(proxy):
    # The error handling for bugs sits beside, not in place of, the fail-over.
    proxy.fake.enqueue(Scripted(answer="lost", delivery=Delivery(drop_after=1)),
                       Scripted(answer="from the other account"))
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", json=HELLO_OPENAI,
                             headers=proxy.headers()) as resp:
            assert resp.status == 200
            raw = await resp.read()
    text = "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in data_payloads(raw) if c.get("choices"))
    assert text == "from the other account"
    failed, served = proxy.fake.calls_to("chat/completion")
    assert failed.account != served.account
    assert proxy.core.pool.inflight == 0
