"""Flat-form reasoning (spec §10.8) that ends in what may be the start of a
think tag (``<thi``) is held back until the next token decides it. These
tests serve such streams from the fake upstream (its ``flat`` scripts) to a
real server and read them with the official OpenAI client: the held text
reaches the client however the answer ends, and a tag cut by a continue
round (§11) is recognised, with nothing doubled or lost at the boundary.
"""

from __future__ import annotations

import openai
import pytest
from conftest import Proxy, ProxyFactory

from ds2proxy.testing import Delivery, Replay, Scripted
from ds2proxy.testing.clients import openai_client

USER = [{"role": "user", "content": "hello"}]
MODEL = "deepseek-reasoner"


async def streamed(proxy: Proxy) -> tuple[str, str, str | None, Exception | None]:
    """Reasoning, answer, finish reason and the error that ended the stream."""
    stream = await openai_client(proxy).chat.completions.create(model=MODEL, messages=USER,
                                                                 stream=True)
    thinking, content, finish, error = [], [], None, None
    try:
        async for chunk in stream:
            for choice in chunk.choices:
                thinking.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
                content.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
    except openai.APIError as exc:
        error = exc
    return "".join(thinking), "".join(content), finish, error


async def whole(proxy: Proxy) -> tuple[str, str, str | None]:
    reply = await openai_client(proxy).chat.completions.create(model=MODEL, messages=USER)
    message = reply.choices[0].message
    return message.model_extra["reasoning_content"], message.content, reply.choices[0].finish_reason


@pytest.mark.parametrize("abort", [False, True], ids=["eof", "reset"])
async def test_a_held_tag_start_is_shown_when_the_stream_is_cut(proxy_factory: ProxyFactory,
                                                                abort: bool):
    """Events: ready, update_session, envelope, "abc", "<thi", then the cut
    (no final status): "<thi" reaches the client before the in-band error."""
    proxy = await proxy_factory({"health": {"enabled": False}})
    proxy.fake.enqueue(Scripted(flat=True, thinking=["abc", "<thi"], answer="",
                                delivery=Delivery(drop_after=5, abort=abort)))
    thinking, content, finish, error = await streamed(proxy)
    assert (thinking, content, finish) == ("abc<thi", "", None)
    assert error is not None
    assert proxy.core.pool.inflight == 0


async def test_a_held_tag_start_is_shown_before_an_error_frame(proxy: Proxy, tmp_path):
    """``data: {"error": …}`` ends the answer: the held text goes first."""
    recording = tmp_path / "error.sse"
    recording.write_text(
        'event: ready\ndata: {"request_message_id":1,"response_message_id":2}\n\n'
        'data: {"v":{"response":{"message_id":2,"status":"WIP","thinking_content":null}}}\n\n'
        'data: {"p":"response/thinking_content","v":"abc"}\n\n'
        'data: {"v":"</"}\n\n'
        'data: {"error":{"message":"overloaded"}}\n\n', encoding="utf-8")
    proxy.fake.enqueue(Replay(recording))
    thinking, _, _, error = await streamed(proxy)
    assert thinking == "abc</" and error is not None and "overloaded" in str(error)
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_a_held_tag_start_is_shown_when_the_rounds_run_out(proxy_factory: ProxyFactory,
                                                                 stream: bool):
    """INCOMPLETE no longer releases the held text (a continue round may
    finish the tag); with no continue allowed, the end of the answer does."""
    proxy = await proxy_factory({"upstream": {"max_continue_rounds": 0}})
    proxy.fake.enqueue(Scripted(flat=True, thinking=["abc", "</think>", "ans", "<thi", "nk>z"],
                                incomplete_after=4))
    if stream:
        thinking, content, finish, error = await streamed(proxy)
        assert error is None
    else:
        thinking, content, finish = await whole(proxy)
    assert (thinking, content, finish) == ("abc", "ans<thi", "length")
    assert proxy.core.pool.inflight == 0


# A tag cut at each point across the continue round, with the snapshot
# holding 0 to 4 characters never streamed as tokens (spec §11.4).
SPLITS = [
    (["abc", "</thi", "nk>ans", "wer"], 2, ("abc", "answer")),
    (["abc", "<", "/think>ans", "wer"], 2, ("abc", "answer")),
    (["abc", "</think", ">ans", "wer"], 2, ("abc", "answer")),
    (["x", "<thi", "nk>abc", "</thi", "nk>ok"], [2, 4], ("xabc", "ok")),
    (["a <", " b", "</think>c"], 2, ("a < b", "c")),
]


@pytest.mark.parametrize("overshoot", [0, 2, 4])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("chunks, cuts, expected", SPLITS)
async def test_a_think_tag_cut_by_a_continue_round_is_recognised(
        proxy: Proxy, chunks: list[str], cuts, expected: tuple[str, str], stream: bool,
        overshoot: int):
    proxy.fake.enqueue(Scripted(flat=True, thinking=chunks, incomplete_after=cuts,
                                snapshot_overshoot=overshoot))
    if stream:
        thinking, content, finish, error = await streamed(proxy)
        assert error is None
    else:
        thinking, content, finish = await whole(proxy)
    assert (thinking, content, finish) == (*expected, "stop")
    rounds = 1 + (len(cuts) if isinstance(cuts, list) else 1)
    assert len(proxy.fake.calls_to("chat/continue")) == rounds - 1
    assert proxy.core.pool.inflight == 0
