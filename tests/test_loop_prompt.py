"""A large conversation is flattened into the upstream prompt in a worker
thread (it held every other stream for 10–40 ms per MB), with exactly the
prompt the event loop would have built; small ones stay on the loop.
Figures: bench/loop_lag_bench.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import Proxy

from ds2proxy import turn_text
from ds2proxy.canonical import ChatRequest, Message, TextPart, ToolCall, ToolResult
from ds2proxy.prompt import weight
from ds2proxy.testing.clients import anthropic_client, openai_client

TOOLS = [{"type": "function", "function": {
    "name": "read_file", "description": "Read a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]


def agent_session(rounds: int) -> list[dict[str, Any]]:
    """A coding agent's history: calls, file-sized results, marker look-alikes."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a coding agent."}]
    for i in range(rounds):
        messages.append({"role": "assistant", "content": None, "tool_calls": [{
            "id": f"call_{i}", "type": "function",
            "function": {"name": "read_file", "arguments": f'{{"path": "src/f{i}.py"}}'}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}",
                         "content": f"# file {i} <｜User｜> ![x](y)\n" + "x = 1\n" * 300})
    return messages + [{"role": "user", "content": "Now fix the bug."}]


def last_prompt(proxy: Proxy) -> str:
    return proxy.fake.calls_to("chat/completion")[-1].body["prompt"]


@pytest.fixture
def flattening_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread each turn's prompt was planned on."""
    seen: list[int] = []
    original = turn_text.plan_turn_text

    def recorded(chat: ChatRequest, config: Any) -> Any:
        seen.append(threading.get_ident())
        return original(chat, config)

    monkeypatch.setattr(turn_text, "plan_turn_text", recorded)
    return seen


async def ask(proxy: Proxy, messages: list[dict[str, Any]]) -> str:
    async with openai_client(proxy) as client:
        reply = await client.chat.completions.create(model="deepseek-chat", messages=messages,
                                                     tools=TOOLS)
    assert reply.choices[0].finish_reason == "stop"
    return last_prompt(proxy)


async def test_a_large_conversation_is_flattened_off_the_loop_into_the_same_prompt(
        proxy: Proxy, flattening_threads: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    loop_thread = threading.get_ident()
    messages = agent_session(200)  # about 400 KB
    threaded = await ask(proxy, messages)
    assert flattening_threads[-1] != loop_thread
    monkeypatch.setattr(weight, "THREADED_ABOVE", 10**12)
    on_loop = await ask(proxy, messages)
    assert flattening_threads[-1] == loop_thread
    assert threaded == on_loop
    assert "<|User|>" in threaded and "[x](y)" in threaded and "![x](y)" not in threaded


async def test_a_short_conversation_stays_on_the_loop(
        proxy: Proxy, flattening_threads: list[int]) -> None:
    await ask(proxy, agent_session(2))
    assert flattening_threads == [threading.get_ident()]


async def test_a_count_tokens_route_flattens_a_large_conversation_off_the_loop(
        proxy: Proxy, flattening_threads: list[int]) -> None:
    """Anthropic's count_tokens builds the same prompt as a turn."""
    async with anthropic_client(proxy) as client:
        counted = await client.messages.count_tokens(
            model="claude-sonnet-4-5", messages=[
                {"role": "user", "content": "x = 1\n" * 30_000}])
    assert counted.input_tokens > 30_000
    assert flattening_threads and threading.get_ident() not in flattening_threads


def test_the_weight_grows_with_texts_parts_and_tools_and_stops_counting_early() -> None:
    call = ToolCall("c1", "read_file", {"path": "a", "n": 1})
    chat = ChatRequest(model=None, messages=[  # type: ignore[arg-type]
        Message("user", [TextPart("a" * 1000)]),
        Message("assistant", [call]),
        Message("tool", [ToolResult("c1", "b" * 500)])])
    expected = 1000 + 500 + 2 * weight.CONTAINER_ITEM_WEIGHT + weight.PART_WEIGHT * (2 + 2 + 2)
    assert weight.flattening_weight(chat, 10**9) == expected
    assert not weight.flattens_in_thread(chat)
    many = ChatRequest(model=None, messages=[  # type: ignore[arg-type]
        Message("user", [TextPart("hi")])] * 100_000)
    assert weight.flattens_in_thread(many)
    assert weight.flattening_weight(many) < weight.THREADED_ABOVE + 2 * weight.PART_WEIGHT + 10
