"""What the fake upstream streams: scripted turns, replays and faults, read by the parser."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ds2proxy.testing import (
    Delivery,
    EnvelopeFault,
    FakeDeepSeek,
    HttpFault,
    Replay,
    Scripted,
    SearchHit,
    load_expected,
)
from ds2proxy.testing.raw_client import RawClient, RawReply
from ds2proxy.testing.reconstruct import lines_of, reconstruct
from ds2proxy.upstream.events import ContentFiltered, Hint, TextChunk

PROMPT = "<｜begin▁of▁sentence｜><｜User｜>Tell me about cats<｜Assistant｜>"
RECORDINGS = [
    "markdown-format-example-20260405-spacefix",
    "longtext-deepseek-v4-flash-20260429",
    "continue-thinking-snapshot-replay-20260405",
    "guangzhou-weather-reasoner-search-20260404",
]


@pytest.fixture
async def client(fake_upstream: FakeDeepSeek) -> AsyncIterator[RawClient]:
    async with RawClient.open(fake_upstream.base_url or "") as raw:
        yield raw


@pytest.fixture
def fake(fake_upstream: FakeDeepSeek) -> FakeDeepSeek:
    return fake_upstream


@pytest.fixture
async def token(fake: FakeDeepSeek, client: RawClient) -> str:
    return await client.login_as(next(iter(fake.accounts.values())))


def chunks_of(events: list, kind: str) -> list[str]:
    return [e.text for e in events if isinstance(e, TextChunk) and e.kind == kind]


async def one_round(client: RawClient, token: str, *, thinking: bool = True) -> RawReply:
    sid = await client.session(token)
    return await client.completion(token, sid, PROMPT, await client.pow_header(token),
                                   thinking=thinking)


async def test_exact_chunks_arrive_as_exact_tokens(fake: FakeDeepSeek, client: RawClient,
                                                   token: str) -> None:
    thinking = ["Let", " me", "  ", "\n\n", "think"]
    answer = ["Hello", " ", "    ", "world\n", '```py\nprint("x")\n```', "\t"]
    fake.enqueue(Scripted(thinking=thinking, answer=answer))
    seen, replies = await client.turn(token, PROMPT)
    assert chunks_of(seen.events, "thinking") == thinking
    assert chunks_of(seen.events, "answer") == answer
    assert seen.parser.status == "FINISHED" and len(replies) == 1
    assert replies[0].content_type == "text/event-stream; charset=utf-8"


async def test_chunk_size_cuts_text_and_keeps_whitespace(fake: FakeDeepSeek, client: RawClient,
                                                         token: str) -> None:
    text = "| a |  b |\n|---|---|\n|   |  x  |\n\n    indented code\n"
    fake.enqueue(Scripted(thinking="", answer=text, chunk_size=4))
    seen, _ = await client.turn(token, PROMPT)
    tokens = chunks_of(seen.events, "answer")
    assert "".join(tokens) == text
    assert all(len(t) <= 4 for t in tokens) and any(not t.strip() for t in tokens)


async def test_thinking_follows_the_request_flag(fake: FakeDeepSeek, client: RawClient,
                                                 token: str) -> None:
    fake.enqueue(Scripted(thinking="hidden", answer="shown"))
    reply = await one_round(client, token, thinking=False)
    seen = reconstruct([reply.body], thinking_enabled=False)
    assert (seen.thinking, seen.answer) == ("", "shown")
    envelope = next(line for line in lines_of(reply.body) if '"fragments":[' in line)
    assert '"type":"RESPONSE"' in envelope and "THINK" not in reply.body.decode()


async def test_search_fragments_and_reference_markers(fake: FakeDeepSeek, client: RawClient,
                                                      token: str) -> None:
    hits = [SearchHit("https://one.example/a", "One"), SearchHit("https://two.example/b", "Two")]
    answer = "Rain today[reference:0]. Wind[reference:1][reference:0]."
    fake.enqueue(Scripted(thinking="searching", answer=answer, search=hits))
    seen, replies = await client.turn(token, PROMPT, search_enabled=True)
    assert seen.answer == answer and seen.thinking == "searching"
    assert seen.parser.citations() == [(0, "https://one.example/a", "One"),
                                       (1, "https://two.example/b", "Two")]
    body = replies[0].body.decode()
    assert '"type":"TOOL_SEARCH"' in body and body.count('"type":"TOOL_OPEN"') >= 2


@pytest.mark.parametrize("overshoot", [0, 3])
async def test_incomplete_rounds_then_continue(fake: FakeDeepSeek, client: RawClient,
                                               token: str, overshoot: int) -> None:
    thinking, answer = "step one, step two, step three", "The answer is 42.\n\nDone."
    fake.enqueue(Scripted(thinking=thinking, answer=answer, incomplete_after=[4, 12],
                          snapshot_overshoot=overshoot))
    seen, replies = await client.turn(token, PROMPT)
    assert (seen.thinking, seen.answer) == (thinking, answer)
    assert seen.continue_after == [True, True, False] and seen.parser.status == "FINISHED"
    continues = fake.calls_to("chat/continue")
    completion = fake.calls_to("chat/completion")[0]
    assert len(continues) == 2
    assert all(c.body["message_id"] == 2 for c in continues)
    assert {c.headers["x-ds-pow-response"] for c in continues} == {
        completion.headers["x-ds-pow-response"]}
    # Each continue round opens with a root snapshot of everything so far.
    assert all(b'"status":"WIP"' in r.body and b"\n: \n" in r.body for r in replies[1:])


async def test_content_filter_after_text(fake: FakeDeepSeek, client: RawClient,
                                         token: str) -> None:
    fake.enqueue(Scripted(thinking="hmm", answer="partial answer", content_filter=True,
                          template="TEMPLATE TEXT"))
    seen, _ = await client.turn(token, PROMPT)
    assert seen.answer == "partial answer"
    assert ContentFiltered("TEMPLATE TEXT") in seen.events
    assert seen.parser.status == "CONTENT_FILTER" and not seen.parser.should_continue


async def test_content_filter_with_no_text(fake: FakeDeepSeek, client: RawClient,
                                           token: str) -> None:
    fake.enqueue(Scripted(content_filter=True))
    seen, _ = await client.turn(token, PROMPT)
    assert (seen.thinking, seen.answer) == ("", "")
    assert [e for e in seen.events if isinstance(e, ContentFiltered)] != []


async def test_hint_refusal(fake: FakeDeepSeek, client: RawClient, token: str) -> None:
    fake.enqueue(Scripted(answer="never", hint="rate_limit_reached"))
    seen, _ = await client.turn(token, PROMPT)
    hints = [e for e in seen.events if isinstance(e, Hint)]
    assert [h.finish_reason for h in hints] == ["rate_limit_reached"]
    assert seen.answer == "" and not seen.parser.ended


async def test_default_script_quotes_the_prompt(client: RawClient, token: str) -> None:
    seen, _ = await client.turn(token, PROMPT)
    assert "Tell me about cats" in seen.answer and seen.parser.status == "FINISHED"
    assert "<｜" not in seen.answer


@pytest.mark.parametrize("name", RECORDINGS)
async def test_replay_reconstructs_expected(fake: FakeDeepSeek, client: RawClient, token: str,
                                            fixtures_dir: Path, name: str) -> None:
    folder = fixtures_dir / "deepseek-sse" / name
    expected = load_expected(folder)
    fake.enqueue(Replay(folder))
    seen, replies = await client.turn(token, PROMPT)
    assert seen.thinking == expected["thinking"]
    assert seen.answer == expected["content"]
    assert seen.parser.status == expected["status"]
    assert len(fake.calls_to("chat/continue")) == expected["rounds"] - 1 == len(replies) - 1
    assert replies[0].body.startswith(b"event: ready\n")


@pytest.mark.parametrize(("fault", "status"), [
    (HttpFault(502), 502), (HttpFault(429, headers={"Retry-After": "7"}), 429)])
async def test_http_fault_before_the_stream(fake: FakeDeepSeek, client: RawClient, token: str,
                                            fault: HttpFault, status: int) -> None:
    fake.enqueue(fault)
    reply = await one_round(client, token)
    assert reply.status == status and not reply.content_type.startswith("text/event-stream")
    follow = await one_round(client, token)
    assert follow.status == 200  # one fault per enqueued script


async def test_retry_after_header_is_sent(fake: FakeDeepSeek, client: RawClient,
                                          token: str) -> None:
    fake.enqueue(HttpFault(429, headers={"Retry-After": "7"}))
    sid = await client.session(token)
    header = await client.pow_header(token)
    body = {"chat_session_id": sid, "prompt": "x", "thinking_enabled": True}
    url = f"{client.base_url}/api/v0/chat/completion"
    async with client.http.post(url, json=body, headers={
            "authorization": f"Bearer {token}", "x-ds-pow-response": header}) as resp:
        assert resp.headers["Retry-After"] == "7"


async def test_envelope_instead_of_stream(fake: FakeDeepSeek, client: RawClient,
                                          token: str) -> None:
    fake.enqueue(EnvelopeFault(code=0, msg="", biz_code=7, biz_msg="quota reached"))
    reply = await one_round(client, token)
    assert reply.status == 200 and reply.content_type.startswith("application/json")
    assert reply.json()["data"]["biz_msg"] == "quota reached"


async def test_drop_mid_stream_ends_without_status(fake: FakeDeepSeek, client: RawClient,
                                                   token: str) -> None:
    fake.enqueue(Scripted(thinking="abcdefghijkl", answer="mnopqrstuvwx", chunk_size=1,
                          delivery=Delivery(drop_after=8)))
    reply = await one_round(client, token)
    seen = reconstruct([reply.body])
    assert sum(line.startswith("data: ") for line in lines_of(reply.body)) == 8
    assert seen.thinking and not seen.parser.ended and not seen.parser.should_continue


async def test_drop_with_abort_breaks_the_connection(fake: FakeDeepSeek, client: RawClient,
                                                     token: str) -> None:
    fake.enqueue(Scripted(answer="x" * 50, chunk_size=1, delivery=Delivery(drop_after=5,
                                                                           abort=True)))
    with pytest.raises(aiohttp.ClientPayloadError):
        await one_round(client, token)


async def test_slow_chunks(fake: FakeDeepSeek, client: RawClient, token: str) -> None:
    fake.enqueue(Scripted(answer="slowly", chunk_size=1, delivery=Delivery(chunk_delay=0.03)))
    started = time.monotonic()
    seen, replies = await client.turn(token, PROMPT)
    events = sum(line.startswith("data: ") for line in lines_of(replies[0].body))
    assert seen.answer == "slowly"
    # Each event waited its delay (a little slack for timer granularity).
    assert time.monotonic() - started >= 0.9 * 0.03 * events


async def test_silence_with_comments(fake: FakeDeepSeek, client: RawClient, token: str) -> None:
    fake.enqueue(Scripted(answer="after the pause",
                          delivery=Delivery(silence=0.3, comment_every=0.05)))
    seen, replies = await client.turn(token, PROMPT)
    lines = lines_of(replies[0].body)
    assert seen.answer == "after the pause"
    assert lines[0] == "event: ready" and lines.count(": ") >= 3
