"""One failed request is one error on the dashboard, whether it failed
before or after its first byte, streamed or not (the route wrapper is the
single place a request's outcome is recorded)."""

from __future__ import annotations

import anthropic
import openai
import pytest

from ds2proxy.testing import Delivery, Scripted
from ds2proxy.testing.clients import anthropic_client, openai_client

from admin_util import wait_until
from conftest import ACCOUNTS

DROPPED = Scripted(answer="never seen", delivery=Delivery(drop_after=0))
# Enough events for visible text to go out before the stream breaks.
BROKEN_MIDWAY = Scripted(answer="a fairly long answer that breaks", chunk_size=2,
                         delivery=Delivery(drop_after=12))
MESSAGES = [{"role": "user", "content": "hi"}]


async def chat(proxy, stream: bool) -> str:
    """The text received before the failure; the failure must raise."""
    client = openai_client(proxy)
    received = ""
    if not stream:
        await client.chat.completions.create(model="deepseek-chat", messages=MESSAGES)
        return received
    async for chunk in await client.chat.completions.create(
            model="deepseek-chat", messages=MESSAGES, stream=True):
        received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    return received


def errors(proxy) -> int:
    return proxy.core.monitor.snapshot()["errors_total"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_request_failing_before_output_counts_once(proxy, fake_upstream, stream):
    fake_upstream.enqueue(*[DROPPED] * len(ACCOUNTS))
    with pytest.raises(openai.APIStatusError) as info:
        await chat(proxy, stream)
    assert info.value.status_code == 502
    assert errors(proxy) == 1
    assert proxy.core.monitor.snapshot()["requests_total"] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_request_failing_after_output_counts_once(proxy, fake_upstream, stream):
    fake_upstream.enqueue(BROKEN_MIDWAY)
    with pytest.raises(openai.APIError) as info:
        await chat(proxy, stream)
    assert "ended before the answer was complete" in str(info.value)
    # The client can read the in-band error and the end of the stream before
    # the handler has returned to the route wrapper that records it.
    await wait_until(lambda: errors(proxy) >= 1)
    assert errors(proxy) == 1
    assert proxy.core.pool.inflight == 0


async def test_an_in_band_anthropic_error_counts_once(proxy, fake_upstream):
    fake_upstream.enqueue(BROKEN_MIDWAY)
    client = anthropic_client(proxy)
    text = ""
    with pytest.raises(anthropic.APIStatusError):
        async with client.messages.stream(model="claude-sonnet-4-6", max_tokens=64,
                                          messages=MESSAGES) as stream:
            async for delta in stream.text_stream:
                text += delta
    assert text, "the failure was meant to come after output"
    await wait_until(lambda: errors(proxy) >= 1)
    assert errors(proxy) == 1
    recent = proxy.core.monitor.snapshot()["recent_errors"]
    assert len(recent) == 1 and recent[0]["path"] == "/v1/messages"


async def test_a_rate_limited_request_counts_once(proxy, fake_upstream):
    """A 429 (the account answered nothing, twice) is one error."""
    fake_upstream.enqueue(*[Scripted(answer="")] * 4)
    with pytest.raises(openai.APIStatusError) as info:
        await chat(proxy, stream=True)
    assert info.value.status_code == 429
    assert errors(proxy) == 1


@pytest.mark.parametrize("faults", [[DROPPED], [Scripted(hint="rate_limit_reached")] * 2],
                         ids=["dropped", "empty-twice"])
async def test_an_account_failing_after_its_stream_opened_is_shown_when_another_serves(
        proxy, fake_upstream, faults):
    # The turn moved on to the other account and succeeded: no request
    # error, but the failed account is named among the recent errors, as
    # one failing before its stream opened is.
    fake_upstream.enqueue(*faults, Scripted(answer="served"))
    assert await chat_text(proxy) == "served"
    failed = fake_upstream.calls_to("chat/completion")[0].account
    assert errors(proxy) == 0
    recent = proxy.core.monitor.snapshot()["recent_errors"]
    assert [e["message"].split(":")[0] for e in recent] == [f"account {failed}"]
    assert proxy.core.pool.health.state(failed) == "cooling_down"


async def chat_text(proxy) -> str:
    reply = await openai_client(proxy).chat.completions.create(model="deepseek-chat",
                                                                messages=MESSAGES)
    return reply.choices[0].message.content or ""
