"""Continue rounds seen from a client (spec §11): an answer the upstream
left INCOMPLETE is read on through chat/continue; one still INCOMPLETE when
the rounds run out is a cut answer, and a continue that fails halfway ends
the stream with an error, with the account blamed once and its lease freed."""

from __future__ import annotations

import openai
import pytest
from conftest import ACCOUNTS, Proxy, ProxyFactory

from ds2proxy.testing import Delivery, Misbehaviour, Scripted
from ds2proxy.testing.clients import anthropic_client, openai_client

USER = [{"role": "user", "content": "hello"}]
ANSWER = "one two three four five six seven"


@pytest.mark.parametrize("rounds, cuts, shown", [
    (0, 2, ANSWER[:6]),
    (1, [2, 4], ANSWER[:12]),
], ids=["no-continue-allowed", "one-continue-allowed"])
async def test_an_answer_still_incomplete_when_the_rounds_run_out_is_cut_for_length(
        proxy_factory: ProxyFactory, rounds: int, cuts, shown: str):
    proxy = await proxy_factory({"upstream": {"max_continue_rounds": rounds}})
    proxy.fake.enqueue(Scripted(answer=ANSWER, incomplete_after=cuts),
                       Scripted(answer=ANSWER, incomplete_after=cuts))
    reply = await openai_client(proxy).chat.completions.create(model="deepseek-chat",
                                                                messages=USER)
    assert reply.choices[0].message.content == shown
    assert reply.choices[0].finish_reason == "length"
    message = await anthropic_client(proxy).messages.create(
        model="claude-sonnet-4-6", max_tokens=1024, messages=USER)
    assert message.content[0].text == shown and message.stop_reason == "max_tokens"
    assert len(proxy.fake.calls_to("chat/continue")) == 2 * rounds
    assert proxy.core.pool.inflight == 0


async def test_an_answer_finished_in_a_continue_round_stops_normally(proxy: Proxy):
    proxy.fake.enqueue(Scripted(answer=ANSWER, incomplete_after=[2, 4]))
    reply = await openai_client(proxy).chat.completions.create(model="deepseek-chat",
                                                                messages=USER)
    assert reply.choices[0].message.content == ANSWER
    assert reply.choices[0].finish_reason == "stop"
    assert len(proxy.fake.calls_to("chat/continue")) == 2


async def test_a_continue_refused_halfway_ends_the_stream_and_blames_the_account_once(
        proxy: Proxy):
    proxy.fake.enqueue(Scripted(answer=ANSWER, incomplete_after=2))
    stream = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=USER, stream=True)
    chunks = [await anext(aiter(stream))]
    used = proxy.fake.calls_to("chat/completion")[0].account
    # The account is banned before its continue round: its token and the
    # fresh login's are refused there.
    proxy.fake.misbehave(used, Misbehaviour(banned=True))
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            chunks.append(chunk)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER[:6]
    health = proxy.core.pool.health
    assert health.record(used).strikes == {"auth": 1}
    assert health.state(used) == "cooling_down"
    other = next(email for email, _ in ACCOUNTS if email != used)
    assert health.record(other).strikes == {} and health.record(other).requests_today == 0
    assert proxy.core.pool.inflight == 0
    assert [s.inflight for s in proxy.core.pool.accounts()] == [0, 0]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_an_answer_kept_alive_by_comments_alone_ends_after_the_silence_timeout(
        proxy_factory: ProxyFactory, stream: bool):
    """Spec §12: give up after a while without new content. The timer
    counted bytes, and ``: `` keep-alive comments are bytes: an upstream
    stuck after some answer text held the turn (and its lease) for as long
    as it kept the connection warm."""
    proxy = await proxy_factory({"upstream": {"silence_timeout_seconds": 1}})
    proxy.fake.enqueue(Scripted(answer="the start of an answer", chunk_size=4, delivery=Delivery(
        silence=120, silence_after=6, comment_every=0.1)))
    client = openai_client(proxy)
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        text = ""
        with pytest.raises(openai.APIError) as info:
            async for chunk in await client.chat.completions.create(**body, stream=True):
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
        assert text and "the start of an answer".startswith(text)
    else:
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(**body)
        assert info.value.status_code == 504
    assert "upstream.silence_timeout_seconds" in str(info.value)
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_a_continue_that_refuses_the_reused_pow_answer_gets_a_fresh_one(
        proxy: Proxy, stream: bool):
    """A continue reuses its completion's PoW header (spec §11.2). Should the
    upstream refuse it as reused (INVALID_POW_RESPONSE), the rule of §12
    holds there too: one fresh challenge, then the round opens. It used to
    end the answer after its first round with an upstream error."""
    proxy.fake.continue_reuses_pow = False
    proxy.fake.enqueue(Scripted(answer=ANSWER, incomplete_after=[2, 4]))
    client = openai_client(proxy)
    if stream:
        chunks = await client.chat.completions.create(model="deepseek-chat", messages=USER,
                                                      stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    else:
        reply = await client.chat.completions.create(model="deepseek-chat", messages=USER)
        text = reply.choices[0].message.content
    assert text == ANSWER
    continues = proxy.fake.calls_to("chat/continue")
    completion = proxy.fake.calls_to("chat/completion")[0]
    # Each round: the reused header refused, then a fresh one accepted.
    assert len(continues) == 4
    headers = [c.headers["x-ds-pow-response"] for c in continues]
    assert headers[0] == completion.headers["x-ds-pow-response"] and headers[2] == headers[1]
    assert len({completion.headers["x-ds-pow-response"], headers[1], headers[3]}) == 3
    assert proxy.core.pool.inflight == 0
