"""The upstream stream dropping at every point of a turn with thinking and a
continue round: whatever the point, the client gets the answer or an error
in its family's shape (a 5xx before output, an in-band error after it),
never a hang nor a silent success; the lease comes back and the request is
recorded once."""

from __future__ import annotations

import json

import pytest

from ds2proxy.testing import Delivery, Scripted
from ds2proxy.testing.clients import post as raw_post

from conftest import ProxyFactory
from admin_util import wait_until

pytestmark = pytest.mark.timeout(300)

BODY = {"model": "deepseek-reasoner", "messages": [{"role": "user", "content": "hi"}]}


def script(drop_after: int | None, abort: bool) -> Scripted:
    return Scripted(thinking="think " * 4, answer="word " * 8, chunk_size=5,
                    incomplete_after=5, delivery=Delivery(drop_after=drop_after, abort=abort))


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("abort", [False, True])
async def test_a_drop_at_every_event_is_an_error_or_the_answer(proxy_factory: ProxyFactory,
                                                               stream: bool, abort: bool):
    # Health off: every drop would cool the accounts down (a 429 thereafter).
    proxy = await proxy_factory({"health": {"enabled": False}})
    recorded = proxy.core.usage.recorded
    outcomes = set()
    for drop in [None, *range(0, 30)]:
        proxy.fake.enqueue(*[script(drop, abort)] * 3)  # fail-overs try again
        reply = await raw_post(proxy.url + "/v1/chat/completions", {**BODY, "stream": stream},
                               proxy.headers())
        recorded += 1
        await wait_until(lambda: proxy.core.usage.recorded == recorded)
        assert proxy.core.pool.inflight == 0
        outcomes.add(outcome(reply, stream))
    assert "answer" in outcomes and "error before output" in outcomes
    assert not stream or "error in-band" in outcomes


def outcome(reply, stream: bool) -> str:
    """What the client got; asserts it is whole and in the family's shape."""
    if reply.status != 200:
        assert reply.status in (502, 504) and "error" in reply.json()
        return "error before output"
    if not stream:
        message = reply.json()["choices"][0]["message"]
        assert (message["reasoning_content"], message["content"]) == ("think " * 4, "word " * 8)
        return "answer"
    frames = [line[6:] for line in reply.text.split("\n") if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    if "error" in chunks[-1]:
        return "error in-band"
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    assert "".join(d.get("content") or "" for d in deltas) == "word " * 8
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "think " * 4
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    return "answer"
