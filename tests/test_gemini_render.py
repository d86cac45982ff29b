"""Canonical results and events → Gemini responses and stream chunks (tool-calling §5.4)."""

from __future__ import annotations

import pytest

from ds2proxy.canonical import (
    ChatRequest,
    Citation,
    CollectedCall,
    Finish,
    ReasoningDelta,
    ResolvedModel,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    TurnResult,
    Usage,
)
from ds2proxy.errors import NotFound, RateLimited, ToolChoiceViolation
from ds2proxy_plugins.gemini.render import generate_content_response
from ds2proxy_plugins.gemini.routes import split_model_action
from ds2proxy_plugins.gemini.stream import StreamRenderer

MODEL = ResolvedModel("gemini-2.5-pro", "deepseek-reasoner", "default", True, False)
CHAT = ChatRequest(model=MODEL, messages=[])
USAGE = Usage(prompt_tokens=10, completion_tokens=7, reasoning_tokens=3)


def result(**fields) -> TurnResult:
    fields.setdefault("usage", USAGE)
    return TurnResult(id="resp-1", **fields)


def test_non_stream_parts_are_thoughts_then_text_then_calls():
    body = generate_content_response(result(
        reasoning="think", text="Sure.", finish="tool_calls",
        calls=[CollectedCall("call_1", "read", '{"path":"a"}'),
               CollectedCall("call_2", "read", '{"path":"b"}')]), CHAT, show_thoughts=True)
    cand = body["candidates"][0]
    assert cand["content"] == {"role": "model", "parts": [
        {"text": "think", "thought": True}, {"text": "Sure."},
        {"functionCall": {"name": "read", "args": {"path": "a"}}},
        {"functionCall": {"name": "read", "args": {"path": "b"}}}]}
    assert (cand["finishReason"], cand["index"]) == ("STOP", 0)
    assert body["modelVersion"] == "gemini-2.5-pro"
    assert body["responseId"] == "resp-1"
    assert body["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 4,
                                     "totalTokenCount": 17, "thoughtsTokenCount": 3}


def test_blank_text_is_left_out_and_hidden_thoughts_are_not_shown():
    body = generate_content_response(result(reasoning="r", text=" \n"), CHAT,
                                     show_thoughts=False)
    assert body["candidates"][0]["content"]["parts"] == []


@pytest.mark.parametrize("reason, expected", [("stop", "STOP"), ("tool_calls", "STOP"),
                                              ("length", "MAX_TOKENS"),
                                              ("content_filter", "SAFETY")])
def test_finish_reasons(reason, expected):
    body = generate_content_response(result(text="x", finish=reason), CHAT)
    assert body["candidates"][0]["finishReason"] == expected


def test_citations_become_citation_metadata():
    body = generate_content_response(
        result(text="x [reference:0]", citations=[Citation(0, "https://a.test", "A")]), CHAT)
    assert body["candidates"][0]["citationMetadata"] == {
        "citations": [{"uri": "https://a.test", "title": "A"}]}


def render_all(events, error=None, **kwargs) -> list[dict]:
    """The chunks of ``events``, then the in-band ``error`` if one is given."""
    renderer = StreamRenderer(CHAT, "resp-1", **kwargs)
    chunks = [chunk for event in events for chunk in renderer.frames(event)]
    return chunks + (renderer.error(error) if error is not None else [])


def parts_of(chunks: list[dict]) -> list[dict]:
    return [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]


def test_stream_sends_text_as_released_calls_when_complete_and_finish_last():
    chunks = render_all([
        ReasoningDelta("hm"), TextDelta("Let me "), TextDelta(""), TextDelta("look."),
        ToolCallStart(0, "call_a", "read"), ToolCallArgs(0, '{"path":'),
        ToolCallArgs(0, '"a"}'), ToolCallEnd(0),
        ToolCallStart(1, "call_b", "grep"), ToolCallArgs(1, '{"q":"x"}'), ToolCallEnd(1),
        USAGE, Finish("tool_calls")], show_thoughts=True)
    assert parts_of(chunks) == [
        {"text": "hm", "thought": True}, {"text": "Let me "}, {"text": "look."},
        {"functionCall": {"name": "read", "args": {"path": "a"}}},
        {"functionCall": {"name": "grep", "args": {"q": "x"}}}]
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    last = chunks[-1]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["totalTokenCount"] == USAGE.total_tokens
    assert {c["responseId"] for c in chunks} == {"resp-1"}
    assert {c["modelVersion"] for c in chunks} == {"gemini-2.5-pro"}


def test_a_call_still_open_at_finish_is_sent_before_the_last_chunk():
    chunks = render_all([ToolCallStart(0, "c", "run"), ToolCallArgs(0, '{"cmd":"ls"}'),
                         Finish("tool_calls")])
    assert parts_of(chunks) == [{"functionCall": {"name": "run", "args": {"cmd": "ls"}}}]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_stream_hides_thoughts_when_the_client_asked_for_none():
    chunks = render_all([ReasoningDelta("r"), TextDelta("t"), Finish("stop")],
                        show_thoughts=False)
    assert parts_of(chunks) == [{"text": "t"}]


def test_stream_content_filter_finishes_with_safety():
    chunks = render_all([TextDelta("partial"), Finish("content_filter")])
    assert chunks[-1]["candidates"][0]["finishReason"] == "SAFETY"


def test_error_after_output_is_a_google_error_chunk():
    chunks = render_all([TextDelta("x")], ToolChoiceViolation())
    assert chunks[-1]["error"]["code"] == 422
    assert chunks[-1]["error"]["status"] == "FAILED_PRECONDITION"
    assert "tool_choice" in chunks[-1]["error"]["message"]
    limited = render_all([], RateLimited("busy", retry_after=7))[0]["error"]
    assert limited["status"] == "RESOURCE_EXHAUSTED"
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": "7s"} in limited["details"]


def test_model_and_method_split_on_the_last_colon():
    assert split_model_action("gemini-2.5-pro:generateContent") == ("gemini-2.5-pro",
                                                                    "generateContent")
    assert split_model_action("tuned:v1:countTokens") == ("tuned:v1", "countTokens")
    for bad in ("gemini-2.5-pro", ":generateContent"):
        with pytest.raises(NotFound):
            split_model_action(bad)


def test_finish_and_usage_ride_on_the_last_content_chunk():
    chunks = render_all([TextDelta("Hel"), TextDelta("lo"), USAGE, Finish("stop")])
    assert [c["candidates"][0]["content"]["parts"] for c in chunks] == [
        [{"text": "Hel"}], [{"text": "lo"}]]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "usageMetadata" in chunks[-1] and "usageMetadata" not in chunks[0]


def test_a_turn_without_text_still_ends_with_a_text_part():
    chunks = render_all([ReasoningDelta("hidden"), Finish("stop")])
    assert len(chunks) == 1
    assert chunks[0]["candidates"][0]["content"]["parts"] == [{"text": ""}]


def test_null_tool_arguments_are_empty_args():
    """``args`` of JSON null went out as {"input": null}."""
    from plugins.gemini.render import call_part
    assert call_part("f", "null") == {"functionCall": {"name": "f", "args": {}}}
    assert call_part("f", "[1]")["functionCall"]["args"] == {"input": [1]}
