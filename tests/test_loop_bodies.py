"""A request body of many objects and arrays is decoded and depth-checked
in a worker thread even when it is under 1 MB: the depth walk visits every
container, and 10,000 short messages (500 KB) held the event loop for 30 ms.
Figures: bench/loop_lag_bench.py."""

from __future__ import annotations

import threading
from typing import Any

import openai
import pytest
from conftest import Proxy

from ds2proxy import body
from ds2proxy.testing.clients import openai_client


@pytest.fixture
def parse_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread each API body was decoded on."""
    seen: list[int] = []
    original = body.parse_object

    def recorded(raw: bytes | bytearray) -> dict[str, Any]:
        seen.append(threading.get_ident())
        return original(raw)

    monkeypatch.setattr(body, "parse_object", recorded)
    return seen


async def chat(proxy: Proxy, count: int) -> str:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"}
                for i in range(count)]
    async with openai_client(proxy) as client:
        reply = await client.chat.completions.create(model="deepseek-chat",
                                                     messages=messages)
    return reply.choices[0].message.content


async def test_a_body_of_thousands_of_short_messages_is_decoded_off_the_loop(
        proxy: Proxy, parse_threads: list[int]) -> None:
    assert await chat(proxy, 3001)
    prompt = proxy.fake.calls_to("chat/completion")[-1].body["prompt"]
    assert "m0" in prompt and "m3000" in prompt
    assert parse_threads and threading.get_ident() not in parse_threads


async def test_a_small_body_is_decoded_on_the_loop(proxy: Proxy,
                                                   parse_threads: list[int]) -> None:
    assert await chat(proxy, 3)
    assert parse_threads == [threading.get_ident()]


async def test_a_body_nested_too_deep_off_the_loop_is_still_a_400(proxy: Proxy) -> None:
    deep: Any = "x"
    for _ in range(150):
        deep = [deep]
    filler = [{"k": i} for i in range(1200)]
    async with openai_client(proxy) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="deepseek-chat", messages=[{"role": "user", "content": "hi"}],
                extra_body={"metadata_deep": deep, "filler": filler})
    assert "nests deeper than 100 levels" in str(caught.value)
