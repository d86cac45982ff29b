"""Canonical turn events → Anthropic message objects and stream frames (tool-calling §5.3)."""

from __future__ import annotations

import json
import re

import pytest

from ds2proxy.canonical import (
    ChatRequest,
    Citation,
    CollectedCall,
    Finish,
    Message,
    ReasoningDelta,
    ResolvedModel,
    TextDelta,
    TextPart,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    TurnResult,
    Usage,
)
from ds2proxy.errors import ToolChoiceViolation
from ds2proxy.dialects.anthropic_messages import (
    MessagesStreamRenderer,
    message_object,
    thinking_signature,
)
from ds2proxy.dialects.anthropic_request import carried_signature, carried_thinking

TOOLU = re.compile(r"^toolu_[A-Za-z0-9]{24}$")
MODEL = ResolvedModel("claude-opus-5-5", "deepseek-reasoner", "default", True, False)
CHAT = ChatRequest(model=MODEL, messages=[Message("user", [TextPart("hi")])])


def result(**fields) -> TurnResult:
    fields.setdefault("usage", Usage(11, 7))
    return TurnResult(id="session", **fields)


def test_message_object_orders_thinking_text_and_tool_use():
    body = message_object(result(reasoning="plan", text="Running it.", finish="tool_calls",
                                 calls=[CollectedCall("call_1", "Bash", '{"command":"ls"}'),
                                        CollectedCall("call_2", "Read", '{"file_path":"/a"}')]),
                          CHAT, "msg_1")
    kinds = [block["type"] for block in body["content"]]
    assert kinds == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, bash, read = body["content"]
    assert thinking == {"type": "thinking", "thinking": "plan",
                        "signature": thinking_signature("plan")}
    assert text["text"] == "Running it."
    assert bash["name"] == "Bash" and bash["input"] == {"command": "ls"}
    assert read["input"] == {"file_path": "/a"}
    assert TOOLU.match(bash["id"]) and TOOLU.match(read["id"]) and bash["id"] != read["id"]
    assert body["stop_reason"] == "tool_use" and body["stop_sequence"] is None
    assert body["usage"] == {"input_tokens": 11, "output_tokens": 7}
    assert (body["id"], body["type"], body["role"], body["model"]) == (
        "msg_1", "message", "assistant", "claude-opus-5-5")


def test_blank_text_gets_no_block():
    body = message_object(result(text=" \n", finish="tool_calls",
                                 calls=[CollectedCall("c", "Bash", "{}")]), CHAT, "m")
    assert [b["type"] for b in body["content"]] == ["tool_use"]


@pytest.mark.parametrize("finish, stop_reason", [
    ("stop", "end_turn"), ("tool_calls", "tool_use"), ("length", "max_tokens"),
    ("content_filter", "refusal")])
def test_stop_reasons(finish, stop_reason):
    assert message_object(result(text="x", finish=finish), CHAT, "m")["stop_reason"] == stop_reason


def test_signature_is_stable_and_opaque():
    assert thinking_signature("abc") == thinking_signature("abc") != thinking_signature("abd")
    assert "abc" not in thinking_signature("abc")


def render(events, error=None, **options) -> list[tuple[str, dict]]:
    """The frames of ``events``, then the in-band ``error`` or the end."""
    renderer = MessagesStreamRenderer(CHAT, "msg_s", 42, **options)
    frames = [frame for event in events for frame in renderer.frames(event)]
    return frames + (renderer.error(error) if error is not None else renderer.end())


def shape(frames) -> list[str]:
    """Event names, with the block or delta type where there is one."""
    out = []
    for name, data in frames:
        detail = (data.get("content_block") or data.get("delta") or {}).get("type")
        out.append(f"{name}:{detail}" if detail and name.startswith("content_block") else name)
    return out


def assert_blocks_well_formed(frames) -> None:
    opened: list[int] = []
    closed: list[int] = []
    for name, data in frames:
        if name == "content_block_start":
            assert data["index"] == len(opened) and len(closed) == len(opened)
            opened.append(data["index"])
        elif name == "content_block_delta":
            assert data["index"] == opened[-1] and data["index"] not in closed
        elif name == "content_block_stop":
            closed.append(data["index"])
    assert opened == closed


CALL_EVENTS = [
    ReasoningDelta("Think"), ReasoningDelta("ing."),
    TextDelta("I will "), TextDelta("list."),
    ToolCallStart(0, "call_a", "Bash"), ToolCallArgs(0, '{"command":"ls"}'), ToolCallEnd(0),
    ToolCallStart(1, "call_b", "Read"), ToolCallArgs(1, '{"file_path":"/x"}'), ToolCallEnd(1),
    TextDelta("Done."), Usage(42, 9), Finish("tool_calls")]


def test_stream_sequence_with_thinking_text_and_calls():
    frames = render(CALL_EVENTS)
    assert shape(frames) == [
        "message_start", "ping",
        "content_block_start:thinking", "content_block_delta:thinking_delta",
        "content_block_delta:thinking_delta", "content_block_delta:signature_delta",
        "content_block_stop",
        "content_block_start:text", "content_block_delta:text_delta",
        "content_block_delta:text_delta", "content_block_stop",
        "content_block_start:tool_use", "content_block_delta:input_json_delta",
        "content_block_stop",
        "content_block_start:tool_use", "content_block_delta:input_json_delta",
        "content_block_stop",
        "content_block_start:text", "content_block_delta:text_delta", "content_block_stop",
        "message_delta", "message_stop"]
    assert_blocks_well_formed(frames)
    start = frames[0][1]["message"]
    assert start["usage"] == {"input_tokens": 42, "output_tokens": 0}
    assert start["model"] == "claude-opus-5-5" and start["content"] == []
    signature = frames[5][1]["delta"]["signature"]
    assert signature == thinking_signature("Thinking.")
    tool = frames[11][1]["content_block"]
    assert tool["input"] == {} and tool["name"] == "Bash" and TOOLU.match(tool["id"])
    assert json.loads(frames[12][1]["delta"]["partial_json"]) == {"command": "ls"}
    delta = frames[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {"output_tokens": 9}


def test_omitted_thinking_streams_an_empty_block_whose_signature_carries_it():
    frames = render(CALL_EVENTS, omit_thinking=True)
    assert shape(frames)[2:5] == ["content_block_start:thinking",
                                  "content_block_delta:signature_delta", "content_block_stop"]
    assert frames[2][1]["content_block"]["thinking"] == ""
    assert carried_thinking(frames[3][1]["delta"]["signature"]) == "Thinking."
    assert_blocks_well_formed(frames)
    body = message_object(result(reasoning="plan", text="x"), CHAT, "m", omit_thinking=True)
    assert body["content"][0]["thinking"] == ""
    assert carried_thinking(body["content"][0]["signature"]) == "plan"


@pytest.mark.parametrize("signature", [
    None, 5, "", thinking_signature("plan"), "EqQBCkYIBxgCKkDAnthropicSignature==",
    "ds2r1:not base64!", "ds2r1:" + "//79", carried_signature("")])
def test_a_signature_that_carries_nothing_gives_no_reasoning(signature):
    assert carried_thinking(signature) == ""


def test_cited_pages_end_the_stream_as_the_web_search_tool_s_blocks():
    events = [TextDelta("Paris [reference:1]."), Citation(1, "https://b.example/", "B"),
              Citation(0, "https://a.example/", ""), Usage(42, 3), Finish("stop")]
    frames = render(events, web_search="web_search")
    assert shape(frames)[-7:] == [
        "content_block_stop", "content_block_start:server_tool_use", "content_block_stop",
        "content_block_start:web_search_tool_result", "content_block_stop",
        "message_delta", "message_stop"]
    assert_blocks_well_formed(frames)
    starts = [d["content_block"] for n, d in frames if n == "content_block_start"]
    assert [b["type"] for b in starts] == ["text", "server_tool_use", "web_search_tool_result"]
    assert starts[2]["tool_use_id"] == starts[1]["id"] and starts[1]["name"] == "web_search"
    assert [(r["url"], r["title"]) for r in starts[2]["content"]] == [
        ("https://a.example/", "https://a.example/"), ("https://b.example/", "B")]
    assert frames[-2][1]["usage"]["server_tool_use"] == {"web_search_requests": 1}
    # Without a declared web search tool (a -search model), citations add no block.
    plain = render(events)
    assert [n for n, _ in plain].count("content_block_start") == 1
    assert "server_tool_use" not in plain[-2][1]["usage"]


def test_filtered_stream_without_content_ends_with_refusal():
    frames = render([Usage(42, 0), Finish("content_filter")])
    assert shape(frames) == ["message_start", "ping", "message_delta", "message_stop"]
    assert frames[2][1]["delta"]["stop_reason"] == "refusal"


def test_error_after_output_is_an_error_event_and_ends_the_stream():
    frames = render([TextDelta("partial")], ToolChoiceViolation())
    assert shape(frames)[-1] == "error"
    assert "message_stop" not in shape(frames)
    error = frames[-1][1]
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"] == ToolChoiceViolation().message


def test_low_confidence_call_deltas_reach_their_block():
    frames = render([TextDelta("a"), ToolCallStart(0, "toolu_keepmeXXXXXXXXXXXXXXX", "Bash"),
                     ToolCallArgs(0, '{"command":'), ToolCallArgs(0, '"pwd"}'), ToolCallEnd(0),
                     Finish("tool_calls")])
    assert_blocks_well_formed(frames)
    tool_block = next(d for n, d in frames if n == "content_block_start"
                      and d["content_block"]["type"] == "tool_use")
    assert tool_block["content_block"]["id"] == "toolu_keepmeXXXXXXXXXXXXXXX"
    parts = [d["delta"]["partial_json"] for n, d in frames
             if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]
    assert json.loads("".join(parts)) == {"command": "pwd"}


def test_finish_is_emitted_once():
    renderer = MessagesStreamRenderer(CHAT, "m", 1)
    frames = renderer.frames(Finish("stop"))
    assert [n for n, _ in frames].count("message_stop") == 1
    assert renderer.finish() == [] and renderer.finished


def test_null_tool_arguments_are_an_empty_input():
    """Arguments of JSON null went out as {"input": null}, an argument no tool declares."""
    from ds2proxy.dialects.anthropic_messages import tool_input
    assert tool_input("null") == {} and tool_input("") == {}
    assert tool_input('"text"') == {"input": "text"} and tool_input('{"a": 1}') == {"a": 1}
