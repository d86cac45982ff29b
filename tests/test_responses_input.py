"""Responses request parsing: every input form, items we emitted, tools and options."""

from __future__ import annotations

import json

import pytest

from ds2proxy.canonical import (
    AttachmentPart,
    ReasoningPart,
    ResolvedModel,
    TextPart,
    ToolCall,
    ToolResult,
)
from ds2proxy.errors import InvalidRequest
from plugins.openai.responses_input import conversation_items, items_to_messages
from plugins.openai.responses_request import flatten_tools, parse_responses_request

MODEL = ResolvedModel(requested="gpt-4o", native="deepseek-chat", model_type="default",
                      thinking=False, search=False)


def parse(body: dict):
    return parse_responses_request(body, MODEL, conversation_items(body))


def roles(messages) -> list[str]:
    return [m.role for m in messages]


def test_string_input_is_one_user_message_after_the_instructions() -> None:
    chat = parse({"input": "Hello", "instructions": "Be brief."}).chat
    assert roles(chat.messages) == ["system", "user"]
    assert chat.messages[0].text == "Be brief." and chat.messages[1].text == "Hello"


def test_object_input_is_one_item() -> None:
    chat = parse({"input": {"role": "user", "content": [{"type": "input_text",
                                                         "text": "one"}]}}).chat
    assert [m.text for m in chat.messages] == ["one"]


def test_messages_win_over_input() -> None:
    chat = parse({"messages": [{"role": "developer", "content": "sys"},
                               {"role": "user", "content": "m"}], "input": "ignored"}).chat
    assert roles(chat.messages) == ["system", "user"]
    assert chat.messages[1].text == "m"


@pytest.mark.parametrize("body", [{}, {"input": None}, {"input": 5}, {"input": "  "},
                                  {"messages": []}])
def test_no_conversation_is_a_400(body: dict) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse(body)
    assert err.value.status == 400 and "'input' or 'messages'" in err.value.message


def test_emitted_items_come_back_as_one_assistant_turn_and_tool_results() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}],
         "content": None, "encrypted_content": None},
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Reading.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "read",
         "arguments": '{"path": "a"}', "status": "completed"},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_2", "name": "apply_patch",
         "input": '{"not": "json args"}'},
        {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "A"},
        {"type": "custom_tool_call_output", "call_id": "call_2",
         "output": [{"type": "input_text", "text": "patched"}]},
    ]
    messages = items_to_messages(items)
    assert roles(messages) == ["user", "assistant", "tool", "tool"]
    assistant = messages[1]
    assert assistant.parts == [
        ReasoningPart("plan"), TextPart("Reading."),
        ToolCall(id="call_1", name="read", arguments={"path": "a"}),
        ToolCall(id="call_2", name="apply_patch", arguments='{"not": "json args"}',
                 kind="custom")]
    assert messages[2].parts == [ToolResult(call_id="call_1", content="A", name="read")]
    assert messages[3].parts == [ToolResult(call_id="call_2", content="patched",
                                            name="apply_patch")]


def test_consecutive_calls_merge_but_calls_after_results_start_a_new_turn() -> None:
    call = {"type": "function_call", "name": "f", "arguments": "{}"}
    items = [{"role": "user", "content": "u"}, {**call, "call_id": "a"}, {**call, "call_id": "b"},
             {"type": "function_call_output", "call_id": "a", "output": "1"},
             {"type": "function_call_output", "call_id": "b", "output": "2"},
             {**call, "call_id": "c"}]
    messages = items_to_messages(items)
    assert roles(messages) == ["user", "assistant", "tool", "tool", "assistant"]
    assert [c.id for c in messages[1].tool_calls] == ["a", "b"]
    assert [c.id for c in messages[4].tool_calls] == ["c"]


def test_reasoning_without_a_following_assistant_turn_is_dropped() -> None:
    items = [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "x"}]},
             {"role": "user", "content": "next"}]
    messages = items_to_messages(items)
    assert roles(messages) == ["user"] and messages[0].reasoning == ""


def test_unknown_items_collect_their_text_into_one_user_message() -> None:
    items = [{"type": "note", "text": "a"}, "b", {"type": "other", "content": "c"},
             {"type": "web_search_call", "id": "ws_1"}, {"role": "user", "content": "d"}]
    messages = items_to_messages(items)
    assert roles(messages) == ["user", "user"]
    assert messages[0].text == "a\nb\nc" and messages[1].text == "d"


def test_input_text_and_image_items_are_user_parts() -> None:
    messages = items_to_messages([{"type": "input_text", "text": "see"},
                                  {"type": "input_image", "image_url": "https://x/y.png"}])
    assert messages[0].text == "see"
    assert isinstance(messages[1].parts[0], AttachmentPart)


def test_codex_tools_namespace_custom_and_hosted(fixtures_dir) -> None:
    body = json.loads((fixtures_dir / "agent-requests/codex-0.169-first-turn.json")
                      .read_text())["body"]
    parsed = parse(body)
    names = [t.name for t in parsed.chat.tools]
    assert "exec_command" in names and "close_agent" in names
    assert parsed.namespaces["close_agent"] == "multi_agent_v1"
    assert not parsed.store
    assert roles(parsed.chat.messages) == ["system", "system", "user", "user"]
    assert parsed.chat.messages[-1].text == "say hi"


def test_flatten_keeps_custom_tools_and_drops_nothing_else() -> None:
    tools = [{"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
             {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]},
             {"type": "web_search"}, {"type": "tool_search", "execution": "client"}]
    flat, namespaces = flatten_tools(tools)
    assert [t.get("name") for t in flat] == ["apply_patch", "f", None, None]
    assert namespaces == {"f": "ns"}
    chat = parse({"input": "x", "tools": tools}).chat
    assert [(t.name, t.kind) for t in chat.tools] == [("apply_patch", "custom"), ("f", "function")]


def test_options_map_onto_the_canonical_request() -> None:
    chat = parse({"input": "x", "max_output_tokens": 50, "temperature": 0.2,
                  "reasoning": {"effort": "high"}, "parallel_tool_calls": False, "stream": True,
                  "text": {"format": {"type": "json_schema", "name": "r",
                                      "schema": {"type": "object"}}}}).chat
    assert chat.max_tokens == 50 and chat.sampling == {"temperature": 0.2}
    assert chat.thinking is True and chat.parallel_tool_calls is False and chat.stream
    assert chat.response_format.type == "json_schema"
    assert chat.response_format.schema == {"type": "object"}


@pytest.mark.parametrize("field, value", [("max_output_tokens", 0), ("max_output_tokens", "9"),
                                          ("text", "json"), ("tools", "f")])
def test_bad_options_are_400s(field: str, value: object) -> None:
    with pytest.raises(InvalidRequest):
        parse({"input": "x", field: value})


def test_reasoning_none_turns_thinking_off() -> None:
    assert parse({"input": "x", "reasoning": {"effort": "none"}}).chat.thinking is False
