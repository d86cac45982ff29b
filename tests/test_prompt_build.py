"""Canonical messages → upstream prompt (prompt-compat §3, §5 and §9)."""

from __future__ import annotations

import base64

import pytest

from ds2proxy.canonical import (
    AttachmentPart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolResult,
)
from ds2proxy.dialects.content import tool_content_text
from ds2proxy.prompt import build_prompt, render_tool_calls
from ds2proxy.prompt import markers as m

GUARD_BLOCK = m.SYSTEM + m.GUARD_TEXT + m.END_INSTRUCTIONS


def system(text: str) -> Message:
    return Message("system", [TextPart(text)])


def user(text: str) -> Message:
    return Message("user", [TextPart(text)])


def assistant(text: str = "", *calls: ToolCall, reasoning: str = "") -> Message:
    parts = [ReasoningPart(reasoning)] if reasoning else []
    parts += [TextPart(text)] if text else []
    return Message("assistant", [*parts, *calls])


def tool(content: str, call_id: str = "c1", name: str | None = None) -> Message:
    return Message("tool", [ToolResult(call_id, content, name)])


def body(prompt: str) -> str:
    """The prompt after the sentence start and the integrity guard."""
    prefix = m.BEGIN + GUARD_BLOCK
    assert prompt.startswith(prefix)
    return prompt[len(prefix):]


def test_spec_example_renders_exactly():
    call = ToolCall("c1", "get_weather", {"city": "Paris"})
    messages = [system("Be brief."), user("Weather in Paris?"), assistant("", call),
                tool("18C sunny", "c1", "get_weather"), user("And Rome?")]
    expected = (
        "<｜begin▁of▁sentence｜><｜System｜>" + m.GUARD_TEXT + "\n\nBe brief.\n\n…TOOLS…"
        "<｜end▁of▁instructions｜><｜User｜>Weather in Paris?<｜Assistant｜><|DSML|tool_calls>\n"
        '  <|DSML|invoke name="get_weather">\n'
        '    <|DSML|parameter name="city"><![CDATA[Paris]]></|DSML|parameter>\n'
        "  </|DSML|invoke>\n"
        "</|DSML|tool_calls><｜end▁of▁sentence｜><｜Tool｜>18C sunny<｜end▁of▁toolresults｜>"
        "<｜User｜>And Rome?<｜Assistant｜>"
    )
    assert build_prompt(messages, tool_prompt="…TOOLS…") == expected


def test_guard_leads_and_is_not_added_twice():
    once = build_prompt([user("hi")])
    assert body(once) == m.USER + "hi" + m.ASSISTANT
    again = build_prompt([system(m.GUARD_TEXT), user("hi")])
    assert again == once
    assert again.count(m.GUARD_LABEL) == 1


def test_guard_is_added_when_the_label_sits_in_a_later_message():
    prompt = build_prompt([user("hi"), system(m.GUARD_TEXT)])
    assert prompt.count(m.GUARD_LABEL) == 2


def test_empty_conversation_still_hands_over():
    assert build_prompt([]) == m.BEGIN + GUARD_BLOCK + m.ASSISTANT


# --- §9 test ideas, rendering side -------------------------------------------


def test_assistant_with_null_content_and_a_call_renders_only_dsml():  # idea 1
    call = ToolCall("c1", "search", {"q": "x"})
    prompt = build_prompt([user("go"), assistant("", call)])
    block = m.ASSISTANT + render_tool_calls([call]) + m.END_SENTENCE
    assert body(prompt) == m.USER + "go" + block
    assert "null" not in prompt


def test_blank_tool_result_becomes_null_and_keeps_the_turn():  # idea 2
    prompt = body(build_prompt([tool(""), assistant("done")]))
    assert prompt == m.TOOL + "null" + m.END_TOOL_RESULTS + m.ASSISTANT + "done" + m.END_SENTENCE


def test_system_text_renders_inside_system_markers():  # ideas 3, 14, 17
    prompt = build_prompt([Message("system", [TextPart("be terse"), TextPart("second")]),
                           user("hi")])
    assert m.SYSTEM + m.GUARD_TEXT + "\n\nbe terse\nsecond" + m.END_INSTRUCTIONS in prompt
    assert prompt.index("be terse") < prompt.index(m.USER + "hi")


def test_consecutive_tool_results_merge_with_headers():  # ideas 4, 16
    prompt = body(build_prompt([tool("a", "c1", "search"), tool("b", "c2", "read")]))
    assert prompt == (
        m.TOOL + "[tool_result name=search id=c1]\na\n\n[tool_result name=read id=c2]\nb"
        + m.END_TOOL_RESULTS + m.ASSISTANT
    )


def test_results_with_only_a_call_id_are_headed_by_the_called_tool():
    calls = [ToolCall("c1", "Bash", {"command": "ls"}), ToolCall("c2", "Read", {"file_path": "a"})]
    prompt = build_prompt([user("go"), assistant("", *calls), tool("text of a", "c2"),
                           tool("a.txt", "c1")])
    assert ("[tool_result name=Read id=c2]\ntext of a\n\n[tool_result name=Bash id=c1]\na.txt"
            in prompt)


def test_single_tool_result_has_no_header():
    assert "[tool_result" not in build_prompt([tool("a", "c1", "search")])


def test_reasoning_comes_first_in_the_assistant_block():  # idea 5
    prompt = build_prompt([user("q"), assistant("A", reasoning="R")])
    assert body(prompt).endswith(
        m.ASSISTANT + "[reasoning_content]\nR\n[/reasoning_content]\n\nA" + m.END_SENTENCE)


def test_reasoning_text_and_calls_are_separated_by_blank_lines():
    call = ToolCall("c1", "Bash", {"command": "ls"})
    prompt = build_prompt([assistant("  look  ", call, reasoning="think")])
    expected = ("[reasoning_content]\nthink\n[/reasoning_content]\n\nlook\n\n"
                + render_tool_calls([call]))
    assert body(prompt) == m.ASSISTANT + expected + m.END_SENTENCE


def test_glued_arguments_stay_verbatim_in_the_prompt():  # idea 6
    prompt = build_prompt([assistant("", ToolCall("c", "search", '{}{"query":"x"}'))])
    assert '<|DSML|parameter name="content"><![CDATA[{}{"query":"x"}]]>' in prompt


def test_nameless_call_is_dropped_with_its_empty_message():  # idea 7
    prompt = build_prompt([user("a"), assistant("", ToolCall("c", "", {"x": 1})), user("b")])
    assert body(prompt) == m.USER + "a\n\nb" + m.ASSISTANT
    assert "DSML" not in prompt


@pytest.mark.parametrize(("content", "text"), [
    ({"temp": 18}, '{"temp":18}'),  # idea 8
    ([{"type": "input_text", "text": "a"}, {"type": "output_text", "text": "b"},
      {"type": "image_url", "image_url": {"url": "http://x/y.png"}}], "a\nb"),  # idea 9
    ("as is", "as is"),
    (None, ""),
    (["plain", {"type": "text", "text": "t"}], "plain\nt"),
])
def test_tool_content_flattening(content, text):
    assert tool_content_text(content) == text


def test_flattened_object_content_lands_in_the_tool_block():
    prompt = build_prompt([tool(tool_content_text({"temp": 18}))])
    assert m.TOOL + '{"temp":18}' + m.END_TOOL_RESULTS in prompt


def test_results_inside_a_user_message_come_before_its_text():  # idea 10
    message = Message("user", [TextPart("thanks"), ToolResult("id1", "ok", "Bash")])
    prompt = body(build_prompt([assistant("", ToolCall("id1", "Bash", {})), message]))
    assert prompt.index(m.TOOL + "ok") < prompt.index(m.USER + "thanks")


def test_call_in_a_user_message_is_not_promoted():  # idea 11
    message = Message("user", [TextPart('{"type":"tool_use","name":"Bash"}'),
                               ToolCall("x", "Bash", {"command": "rm -rf /"})])
    prompt = build_prompt([message])
    assert "DSML" not in prompt
    assert m.USER + '{"type":"tool_use","name":"Bash"}' in prompt


def test_inline_image_becomes_a_placeholder_never_base64():  # idea 13
    data = b"\x89PNG" + bytes(range(256)) * 6
    encoded = base64.b64encode(data).decode()
    image = AttachmentPart("image", mime_type="image/png", data=data,
                           url=f"data:image/png;base64,{encoded}")
    prompt = build_prompt([Message("user", [TextPart("what is this"), image])])
    assert m.USER + "what is this\n[image: image/png]" in prompt
    assert encoded[:64] not in prompt


@pytest.mark.parametrize(("part", "placeholder"), [
    (AttachmentPart("image", url="http://x/cat.png"), "[image: http://x/cat.png]"),
    (AttachmentPart("image", url="data:image/gif;base64,R0lGOD"), "[image: image/gif]"),
    (AttachmentPart("image"), "[image: attached]"),
    (AttachmentPart("file", name="report.pdf", mime_type="application/pdf"),
     "[file: report.pdf]"),
    (AttachmentPart("file", mime_type="text/csv"), "[file: text/csv]"),
])
def test_attachment_placeholders(part, placeholder):
    assert m.USER + placeholder + m.ASSISTANT in build_prompt([Message("user", [part])])


def test_uploaded_attachment_is_not_mentioned():
    part = AttachmentPart("file", name="a.txt", file_id="file-1")
    assert body(build_prompt([Message("user", [TextPart("see"), part])])) == (
        m.USER + "see" + m.ASSISTANT)


def test_trailing_assistant_is_a_prefill_without_hand_over():  # idea 19
    prompt = build_prompt([user("q"), assistant("Sure,")])
    assert prompt.endswith(m.ASSISTANT + "Sure," + m.END_SENTENCE)


def test_markdown_images_become_links():  # idea 20
    prompt = build_prompt([user("see ![logo](http://x/y.png) and [a](b)")])
    assert "see [logo](http://x/y.png) and [a](b)" in prompt
    assert "![" not in prompt


def test_thinking_injection_only_when_given():  # idea 21
    messages = [user("first"), assistant("ok"), user("second")]
    plain = build_prompt(messages)
    assert build_prompt(messages, thinking_injection="") == plain
    injected = build_prompt(messages, thinking_injection="Think hard.")
    assert injected == plain.replace("second", "second\n\nThink hard.")


def test_thinking_injection_is_idempotent():
    messages = [user("q\n\nThink hard.")]
    assert build_prompt(messages, thinking_injection="Think hard.") == build_prompt(messages)


# --- §3.3 placement and merging -----------------------------------------------


def test_tool_prompt_opens_a_system_message_when_there_is_none():
    prompt = build_prompt([user("hi")], tool_prompt="TOOLS")
    assert prompt == (m.BEGIN + m.SYSTEM + m.GUARD_TEXT + "\n\nTOOLS" + m.END_INSTRUCTIONS
                      + m.USER + "hi" + m.ASSISTANT)


def test_tool_prompt_joins_only_the_first_system_message():
    prompt = build_prompt([system("one"), user("u"), system("two")], tool_prompt="TOOLS")
    assert "one\n\nTOOLS" + m.END_INSTRUCTIONS in prompt
    assert prompt.endswith(m.SYSTEM + "two" + m.END_INSTRUCTIONS + m.ASSISTANT)


def test_middle_system_message_stays_in_place():
    prompt = body(build_prompt([user("a"), system("  note  "), user("b")]))
    assert prompt == (m.USER + "a" + m.SYSTEM + "note" + m.END_INSTRUCTIONS + m.USER + "b"
                      + m.ASSISTANT)


def test_empty_system_block_is_omitted_but_empty_user_kept():
    prompt = body(build_prompt([user("a"), system("   "), Message("user", [])]))
    assert prompt == m.USER + "a" + m.USER + m.ASSISTANT


def test_lone_empty_user_message_is_kept():
    assert body(build_prompt([Message("user", [])])) == m.USER + m.ASSISTANT


def test_consecutive_same_role_messages_merge():
    prompt = body(build_prompt([user("a"), user("b"), assistant("x"), assistant("y")]))
    assert prompt == m.USER + "a\n\nb" + m.ASSISTANT + "x\n\ny" + m.END_SENTENCE


def test_unknown_role_renders_text_without_marker():
    prompt = body(build_prompt([user("a"), Message("narrator", [TextPart("aside")]),
                                Message("narrator", [])]))
    assert prompt == m.USER + "a" + "aside" + m.ASSISTANT


def test_tool_error_is_marked():
    message = Message("tool", [ToolResult("c1", "boom", "Bash", is_error=True)])
    assert m.TOOL + "[tool error]\nboom" + m.END_TOOL_RESULTS in build_prompt([message])


def test_tool_message_with_text_parts_only_is_a_result():
    prompt = build_prompt([Message("tool", [TextPart("42")])])
    assert m.TOOL + "42" + m.END_TOOL_RESULTS in prompt
