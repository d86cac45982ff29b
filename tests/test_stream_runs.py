"""Long answers whose tokens take the run paths (one match and decode per
read upstream, one TextRun through the shaper, one framed PayloadRun to the
client) arrive exactly: every upstream token as its own chunk, whatever the
tokens hold. Official client → ds2proxy → fake DeepSeek, on real ports."""

from __future__ import annotations

import random

from ds2proxy.testing import Scripted
from ds2proxy.testing.clients import openai_client

USER = [{"role": "user", "content": "hello"}]
# Quotes, commas and backslashes (what the one-encode framing could mistake
# for a boundary), escapes, non-ASCII, a marker's first character.
ODD = ['"', ",", '","', '",', ',"', "\\", '\\"', "a\\", "ü", "😀", "中文", "\u2028", "\x00",
       "\t", "\n", " ", "x" * 40, "{", "}", "]", "[", "word ", "data: "]


def tokens(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(ODD) if rng.random() < 0.3 else f"t{n} " for n in range(count)]


async def test_a_long_odd_answer_streams_token_for_token(proxy):
    answer = tokens(1, 6000)
    proxy.fake.enqueue(Scripted(answer=answer, tip=False))
    stream = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=USER, stream=True)
    deltas = [choice.delta.content async for chunk in stream for choice in chunk.choices
              if choice.delta.content]
    assert "".join(deltas) == "".join(answer)
    # Runs of plain text go out a chunk per upstream token; a "[" (a
    # possible citation marker) may hold a few back and join them.
    assert len(deltas) >= len(answer) - 2 * sum(token == "[" for token in answer)
    assert proxy.core.pool.inflight == 0


async def test_a_long_plain_answer_is_a_chunk_per_upstream_token(proxy):
    answer = [f"w{n} " for n in range(5000)]
    proxy.fake.enqueue(Scripted(answer=answer, tip=False))
    stream = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=USER, stream=True,
        stream_options={"include_usage": True})
    deltas, usage = [], None
    async for chunk in stream:
        usage = chunk.usage or usage
        deltas += [choice.delta.content for choice in chunk.choices if choice.delta.content]
    assert deltas == answer
    assert usage is not None and usage.completion_tokens > 0


async def test_a_long_odd_answer_collects_exactly(proxy):
    answer = tokens(2, 6000)
    proxy.fake.enqueue(Scripted(answer=answer, tip=False))
    resp = await openai_client(proxy).chat.completions.create(model="deepseek-chat",
                                                              messages=USER)
    assert resp.choices[0].message.content == "".join(answer)
    assert resp.usage.completion_tokens > 0
