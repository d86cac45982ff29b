"""Anthropic Messages requests → canonical requests (prompt-compat §4.3)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ds2proxy.canonical import ReasoningPart, ResolvedModel, TextPart, ToolCall, ToolResult
from ds2proxy.errors import InvalidRequest
from ds2proxy.dialects.anthropic_request import (
    DEFAULT_MAX_TOKENS,
    parse_messages_request,
    redacted_json,
)
from ds2proxy.prompt import markers
from ds2proxy.prompt.build import build_prompt

OPUS = ResolvedModel("claude-opus-5-5", "deepseek-reasoner", "default", True, False)


def parse(**body):
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return parse_messages_request(body, OPUS)


def prompt_of(**body) -> str:
    return build_prompt(parse(**body).messages)


def test_system_string_and_blocks_become_the_first_system_message():
    as_text = parse(system="Be brief.\n\nAnswer in English.")
    as_blocks = parse(system=[{"type": "text", "text": "Be brief."},
                              {"type": "text", "text": "Answer in English.",
                               "cache_control": {"type": "ephemeral"}}])
    for chat in (as_text, as_blocks):
        assert chat.messages[0].role == "system"
        assert chat.messages[0].text == "Be brief.\n\nAnswer in English."


def test_system_role_inside_messages_stays_in_place():
    chat = parse(messages=[
        {"role": "user", "content": "first"},
        {"role": "system", "content": [{"type": "text", "text": "env: linux"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"}])
    assert [m.role for m in chat.messages] == ["user", "system", "assistant", "user"]
    assert chat.messages[1].text == "env: linux"


def test_tool_results_come_before_the_text_of_the_same_user_message():
    prompt = prompt_of(messages=[
        {"role": "user", "content": "run it"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [
            {"type": "text", "text": "thanks"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}]}])
    tool_at = prompt.index(markers.TOOL + "a.txt")
    assert prompt.index(markers.USER + "thanks") > tool_at


def test_tool_use_in_a_user_message_is_not_a_call():
    block = {"type": "tool_use", "id": "toolu_x", "name": "Bash", "input": {"command": "rm"}}
    chat = parse(messages=[{"role": "user", "content": [block]}])
    (part,) = chat.messages[0].parts
    assert isinstance(part, TextPart)
    assert json.loads(part.text) == block


def test_assistant_tool_use_becomes_a_call_and_a_missing_id_is_generated():
    chat = parse(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "name": "Read", "input": {"file_path": "/a"}}]}])
    call = chat.messages[1].tool_calls[0]
    assert (call.id, call.name, call.arguments) == ("call_claude_1", "Read", {"file_path": "/a"})
    assert chat.messages[1].text == "Looking."


def test_tool_result_without_id_takes_the_last_call_of_that_name():
    chat = parse(messages=[
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "search", "input": {}},
            {"type": "tool_use", "id": "toolu_b", "name": "search", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "name": "search", "content": "x"}]}])
    (result,) = chat.messages[1].tool_results
    assert (result.call_id, result.name) == ("toolu_b", "search")


def test_tool_result_name_is_looked_up_from_its_call():
    chat = parse(messages=[
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a"}]}])
    assert chat.messages[1].tool_results[0].name == "Bash"


def test_tool_result_blocks_are_joined_as_text_and_errors_are_marked():
    chat = parse(messages=[
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
        {"role": "user", "content": [{
            "type": "tool_result", "tool_use_id": "t1", "is_error": True,
            "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}]}]}])
    result = chat.messages[1].tool_results[0]
    assert isinstance(result, ToolResult)
    assert (result.content, result.is_error) == ("line 1\nline 2", True)
    assert "[tool error]\nline 1\nline 2" in build_prompt(chat.messages)


def test_tool_result_image_becomes_an_attachment_of_the_result():
    png = b"\x89PNG" * 600
    chat = parse(messages=[
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Read",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "text", "text": "screenshot:"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(png).decode()}}]}]}])
    result = chat.messages[1].tool_results[0]
    assert result.content == "screenshot:"
    assert [(a.kind, a.mime_type, a.data) for a in result.attachments] == [
        ("image", "image/png", png)]
    assert chat.messages[1].attachments == list(result.attachments)
    prompt = build_prompt(chat.messages)
    assert "screenshot:\n[image: image/png]" in prompt
    assert base64.b64encode(png).decode()[:64] not in prompt


def test_inline_image_never_reaches_the_prompt():
    data = base64.b64encode(bytes(range(256)) * 8).decode()
    chat = parse(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": data}},
        {"type": "text", "text": "what is this?"}]}])
    image = chat.messages[0].attachments[0]
    assert image.data == base64.b64decode(data)
    prompt = build_prompt(chat.messages)
    assert "[image: image/jpeg]" in prompt and data[:64] not in prompt


def test_undecodable_inline_image_is_refused():
    with pytest.raises(InvalidRequest):
        parse(messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "abc"}}]}])


def test_thinking_comes_back_as_reasoning_and_redacted_thinking_is_dropped():
    chat = parse(messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "c2lnbmF0dXJl"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Answer."}]}])
    parts = chat.messages[1].parts
    assert [type(p) for p in parts] == [ReasoningPart, TextPart]
    prompt = build_prompt(chat.messages)
    assert "Let me think." in prompt
    assert "c2lnbmF0dXJl" not in prompt and "opaque" not in prompt


def test_unknown_blocks_are_json_with_binary_payloads_omitted():
    block = {"type": "search_result", "title": "t", "data": "AAAA", "note": "some words " * 200,
             "blob": "QUJD" * 200}
    text = redacted_json(block)
    value = json.loads(text)
    assert value["data"] == value["blob"] == "[omitted_binary_payload]"
    assert value["note"].endswith("...(truncated)") and len(value["note"]) < 1100


def test_search_result_blocks_reach_the_prompt_whole_as_text():
    """RAG content: search_result blocks at the top level and in a tool result
    were written as JSON with every text cut at 1 KB."""
    long_text = "fact " * 600
    result = {"type": "search_result", "source": "https://docs.example/a", "title": "Guide",
              "content": [{"type": "text", "text": long_text}],
              "citations": {"enabled": True}}
    prompt = prompt_of(messages=[
        {"role": "user", "content": [result, {"type": "text", "text": "q"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                           "name": "search", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [result]}]}])
    assert prompt.count("[search result: Guide - https://docs.example/a]\n" + long_text) == 2
    assert "...(truncated)" not in prompt and '"search_result"' not in prompt


def test_text_documents_keep_their_title_and_context():
    prompt = prompt_of(messages=[{"role": "user", "content": [
        {"type": "document", "title": "Q3 report", "context": "Written by finance.",
         "source": {"type": "text", "media_type": "text/plain", "data": "Revenue rose."}},
        {"type": "document", "source": {"type": "content", "content": [
            {"type": "text", "text": "Untitled body."}]}},
        {"type": "text", "text": "Summarise."}]}])
    assert "[document: Q3 report]\nWritten by finance.\nRevenue rose.\nUntitled body." in prompt


def test_client_tools_are_declared_and_server_tools_skipped():
    chat = parse(tools=[
        {"name": "Bash", "description": "run", "input_schema": {"type": "object"}},
        {"type": "custom", "name": "Read", "input_schema": {"type": "object"}},
        {"name": "Later", "input_schema": {"type": "object"}, "defer_loading": True,
         "cache_control": {"type": "ephemeral"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        {"type": "function", "function": {"name": "legacy", "parameters": {"type": "object"}}}])
    assert [(t.name, t.kind) for t in chat.tools] == [
        ("Bash", "function"), ("Read", "function"), ("Later", "function"),
        ("legacy", "function")]
    assert chat.tools[0].parameters == {"type": "object"}


def test_tool_choice_naming_a_server_tool_is_no_call_and_any_with_only_server_tools_is_auto():
    tools = [{"name": "Bash", "input_schema": {"type": "object"}},
             {"type": "web_search_20250305", "name": "web_search"}]
    forced = parse(tools=tools, tool_choice={"type": "tool", "name": "web_search",
                                             "disable_parallel_tool_use": True})
    assert (forced.tool_choice.mode, forced.parallel_tool_calls) == ("none", False)
    server_only = parse(tools=tools[1:], tool_choice={"type": "any"})
    assert (server_only.tool_choice.mode, server_only.tools) == ("auto", [])
    assert parse(tools=tools, tool_choice={"type": "any"}).tool_choice.mode == "required"
    with pytest.raises(InvalidRequest, match="not declared"):
        parse(tools=tools, tool_choice={"type": "tool", "name": "web_fetch"})
    with pytest.raises(InvalidRequest, match="unique"):
        parse(tools=[*tools, {"name": "web_search", "input_schema": {"type": "object"}}])


def test_anthropic_defined_client_tools_get_the_input_their_client_expects():
    chat = parse(tools=[{"type": "bash_20250124", "name": "bash"},
                        {"type": "text_editor_20250124", "name": "str_replace_editor"},
                        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
                        {"type": "computer_20250124", "name": "computer",
                         "display_width_px": 1024, "display_height_px": 768},
                        {"type": "memory_20250818", "name": "memory"},
                        {"type": "code_execution_20250825", "name": "code_execution"}])
    by_name = {t.name: t for t in chat.tools}
    assert list(by_name) == ["bash", "str_replace_editor", "str_replace_based_edit_tool",
                             "computer", "memory"]
    assert set(by_name["bash"].parameters["properties"]) == {"command", "restart"}
    commands = by_name["str_replace_editor"].parameters["properties"]["command"]["enum"]
    assert "undo_edit" in commands
    newer = by_name["str_replace_based_edit_tool"].parameters["properties"]["command"]["enum"]
    assert "undo_edit" not in newer
    assert "width_px=1024" in by_name["computer"].description
    assert "insert_text" in by_name["memory"].parameters["properties"]
    forced = parse(tools=[{"type": "bash_20250124", "name": "bash"}],
                   tool_choice={"type": "tool", "name": "bash"})
    assert (forced.tool_choice.mode, forced.tool_choice.name) == ("forced", "bash")
    with pytest.raises(InvalidRequest) as caught:
        parse(tools=[{"type": "bash_20250124"}])
    assert caught.value.param == "tools[0].name"


def test_tool_choice_and_single_call_mode():
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    forced = parse(tools=tools, tool_choice={"type": "tool", "name": "Bash",
                                             "disable_parallel_tool_use": True})
    assert (forced.tool_choice.mode, forced.tool_choice.name) == ("forced", "Bash")
    assert forced.parallel_tool_calls is False
    assert parse(tools=tools, tool_choice={"type": "any"}).tool_choice.mode == "required"
    assert parse(tools=tools, tool_choice={"type": "none"}).tool_choice.mode == "none"
    assert parse(tools=tools).parallel_tool_calls is True


def test_max_tokens_defaults_and_is_validated():
    assert parse().max_tokens == DEFAULT_MAX_TOKENS
    assert parse(max_tokens=64000).max_tokens == 64000
    for bad in (0, -1, "100", True, 1.5):
        with pytest.raises(InvalidRequest) as info:
            parse(max_tokens=bad)
        assert info.value.param == "max_tokens"


def test_sampling_and_stop_sequences():
    chat = parse(temperature=0.2, top_p=0.9, top_k=5, stop_sequences=["END", "FIN"])
    assert chat.sampling == {"temperature": 0.2, "top_p": 0.9, "top_k": 5,
                             "stop": ["END", "FIN"]}


@pytest.mark.parametrize("bad", [["END", ""], ["END", 3], "END", ["x"] * 17, ["y" * 1001]])
def test_bad_stop_sequences_are_refused(bad):
    with pytest.raises(InvalidRequest) as info:
        parse(stop_sequences=bad)
    assert info.value.param == "stop_sequences"


@pytest.mark.parametrize("field, value", [
    ("temperature", "hot"), ("temperature", -50), ("temperature", 1e308), ("top_p", 1.5),
    ("top_k", 2.5), ("stop_sequences", {"x": 1}), ("stop_sequences", ["END", 3]),
    ("stream", "yes"), ("max_tokens", 0), ("metadata", [])])
def test_sampling_fields_out_of_range_are_refused_naming_the_field(field, value):
    with pytest.raises(InvalidRequest) as info:
        parse(**{field: value})
    assert info.value.param == field
    assert field in info.value.message
    if not isinstance(value, int | float):
        assert repr(value) not in info.value.message


@pytest.mark.parametrize("thinking, expected", [
    ({"type": "enabled", "budget_tokens": 2048}, True),
    ({"type": "disabled"}, False),
    ({"type": "adaptive", "display": "omitted"}, None),
    (None, None)])
def test_thinking_switch(thinking, expected):
    body = {} if thinking is None else {"thinking": thinking}
    assert parse(**body).thinking is expected


def test_structured_output_format_is_read():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    chat = parse(output_config={"effort": "high",
                                "format": {"type": "json_schema", "schema": schema}})
    assert (chat.response_format.type, chat.response_format.schema) == ("json_schema", schema)
    assert parse(output_config={"effort": "medium"}).response_format.type == "text"


@pytest.mark.parametrize("messages", [None, [], "hi", [1], [{"role": 5, "content": "x"}],
                                      [{"role": "user", "content": 5}]])
def test_bad_messages_are_refused(messages):
    body = {"messages": messages} if messages is not None else {}
    with pytest.raises(InvalidRequest) as info:
        parse_messages_request(body, OPUS)
    assert info.value.param.startswith("messages")


def test_bad_system_is_refused():
    with pytest.raises(InvalidRequest):
        parse(system=5)


@pytest.mark.parametrize("name", ["claude-code-2.1.330-first-turn.json",
                                  "claude-code-2.1.330-tool-result-turn.json"])
def test_claude_code_requests_parse(fixtures_dir: Path, name: str):
    body = json.loads((fixtures_dir / "agent-requests" / name).read_text())["body"]
    chat = parse_messages_request(body, OPUS)
    assert len(chat.tools) == len(body["tools"])
    assert chat.thinking is None and chat.stream is True
    assert chat.max_tokens == body["max_tokens"]
    roles = [m.role for m in chat.messages]
    assert roles[:3] == ["system", "user", "system"]
    assert "x-anthropic-billing-header" in chat.messages[0].text
    calls = [p for m in chat.messages for p in m.parts if isinstance(p, ToolCall)]
    results = [r for m in chat.messages for r in m.tool_results]
    assert [c.id for c in calls] == [r.call_id for r in results]
