"""The provider stream's translation: think tags split at every boundary,
reasoning_content, tool calls in pieces, usage and finish reasons."""

from __future__ import annotations

import pytest

from ds2proxy.canonical import (
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
    Usage,
)
from ds2proxy.providers.stream import ChunkTranslator, ThinkSplitter, final_events

TAGGED = "  <think>a<b</thin>c</think>\n\nAnswer <think>kept</think> é"


def split(pieces: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    events = [e for piece in pieces for e in splitter.feed(piece)] + splitter.flush()
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return reasoning, text


@pytest.mark.parametrize("cut", range(len(TAGGED) + 1))
def test_think_tags_split_at_any_boundary(cut):
    assert split([TAGGED[:cut], TAGGED[cut:]]) == ("a<b</thin>c", "Answer <think>kept</think> é")


def test_think_tags_one_character_at_a_time():
    assert split(list(TAGGED)) == ("a<b</thin>c", "Answer <think>kept</think> é")


@pytest.mark.parametrize("text, expected", [
    ("plain answer", ("", "plain answer")),
    ("<thinking>x", ("", "<thinking>x")),
    ("<think>never closed", ("never closed", "")),
    ("<thi", ("", "<thi")),
    ("", ("", "")),
])
def test_think_edge_cases(text, expected):
    assert split([text]) == expected


def test_reasoning_field_text_calls_usage_and_finish():
    translator = ChunkTranslator(think_tags=False, tools=[])
    events = []
    for delta in ({"role": "assistant", "content": ""}, {"reasoning_content": "hm"},
                  {"content": "Hi"},
                  {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f",
                                                                        "arguments": '{"a"'}}]},
                  {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                  {"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "g",
                                                                        "arguments": "{}"}}]}):
        events += translator.chunk({"choices": [{"delta": delta}]})
    events += translator.chunk({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]})
    events += translator.chunk({"choices": [], "usage": {
        "prompt_tokens": 3, "completion_tokens": 4,
        "completion_tokens_details": {"reasoning_tokens": 1}}})
    events += translator.end() + final_events(translator, Usage(0, 0))
    assert events == [ReasoningDelta("hm"), TextDelta("Hi"), ToolCallStart(0, "c1", "f"),
                      ToolCallArgs(0, '{"a"'), ToolCallArgs(0, ": 1}"), ToolCallEnd(0),
                      ToolCallStart(1, "c2", "g"), ToolCallArgs(1, "{}"), ToolCallEnd(1),
                      Usage(3, 4, 1), Finish("tool_calls")]


def test_a_custom_tool_gets_its_text_back():
    translator = ChunkTranslator(think_tags=False, tools=[ToolSpec("patch", kind="custom")])
    events = translator.chunk({"choices": [{"delta": {"tool_calls": [
        {"index": 0, "id": "c", "function": {"name": "patch",
                                             "arguments": '{"input": "diff"}'}}]}}]})
    events += translator.end()
    assert events == [ToolCallStart(0, "c", "patch", "custom"), ToolCallArgs(0, "diff"),
                      ToolCallEnd(0)]


def test_reasoning_none_ignores_the_field_and_keeps_tags_as_text():
    translator = ChunkTranslator(think_tags=False, tools=[], reasoning_field=False)
    events = translator.chunk({"choices": [{"delta": {"reasoning_content": "r",
                                                      "content": "<think>x</think>y"}}]})
    assert events == [TextDelta("<think>x</think>y")]


def test_thinking_off_drops_reasoning_of_both_kinds():
    translator = ChunkTranslator(think_tags=True, tools=[], keep_reasoning=False)
    events = translator.chunk({"choices": [{"delta": {"reasoning_content": "r",
                                                      "content": "<think>x</think>y"}}]})
    assert events + translator.end() == [TextDelta("y")]


def test_without_provider_usage_the_fallback_is_reported():
    translator = ChunkTranslator(think_tags=False, tools=[])
    translator.chunk({"choices": [{"delta": {"content": "x"}, "finish_reason": "length"}]})
    assert final_events(translator, Usage(7, 1)) == [Usage(7, 1), Finish("length")]


async def test_an_error_chunk_ends_the_answer_without_quoting_the_key():
    from ds2proxy.errors import UpstreamError
    from ds2proxy.providers.answers import sse_reads
    from ds2proxy.providers.client import ProviderClient
    from ds2proxy.providers.settings import ProviderSettings
    from ds2proxy.testing.fake_provider import FakeProvider

    class ErrorChunk(FakeProvider):
        async def chat(self, request):
            from aiohttp import web
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n'
                                 b'data: {"error": {"message": "bad key sk-abcdef"}}\n\n')
            return response

    async with ErrorChunk() as fake:
        client = ProviderClient(ProviderSettings("p", fake.base_url, api_key="sk-abcdef"))
        try:
            response = await client.open_chat({"model": "m", "messages": []})
            seen = []
            with pytest.raises(UpstreamError) as info:
                async for chunks in sse_reads(response, client):
                    seen += chunks
            response.release()
        finally:
            await client.close()
    assert [c["choices"][0]["delta"]["content"] for c in seen] == ["a"]
    assert "sk-abcdef" not in info.value.detail and "bad key" in info.value.detail


async def test_json_calls_share_the_chat_errors():
    from ds2proxy.errors import UpstreamRateLimited
    from ds2proxy.providers.client import ProviderClient
    from ds2proxy.providers.settings import ProviderSettings
    from ds2proxy.testing.fake_provider import FakeProvider
    from ds2proxy.testing.provider_replies import ProviderReply

    async with FakeProvider(["m1"], api_key="sk-json") as fake:
        client = ProviderClient(ProviderSettings("p", fake.base_url, api_key="sk-json"))
        try:
            models = await client.call_json("GET", "/models")
            vectors = await client.call_json("POST", "/embeddings",
                                             {"model": "e", "input": ["a", "b"], "dimensions": 3})
            fake.fail_embeddings(ProviderReply(status=429, retry_after="4"))
            with pytest.raises(UpstreamRateLimited) as info:
                await client.call_json("POST", "/embeddings", {"model": "e", "input": ["a"]})
        finally:
            await client.close()
    assert [m["id"] for m in models["data"]] == ["m1"]
    assert [len(v["embedding"]) for v in vectors["data"]] == [3, 3]
    assert info.value.retry_after == 4 and fake.embedding_batches == [2]


@pytest.mark.parametrize("reason, expected", [
    ("length", "length"), ("max_tokens", "length"), ("MAX_TOKENS", "length"),
    ("tool_use", "tool_calls"), ("SAFETY", "content_filter"), ("end_turn", "stop"),
    ("eos", "stop")])
def test_finish_reasons_passed_through_by_gateways_keep_their_meaning(reason, expected):
    """A gateway in front of Anthropic or Gemini may pass their finish reason
    through: 'max_tokens' read as 'stop' hid that the answer was cut off."""
    translator = ChunkTranslator(think_tags=False, tools=[])
    translator.chunk({"choices": [{"delta": {"content": "x"}, "finish_reason": reason}]})
    assert translator.finish_reason == expected
