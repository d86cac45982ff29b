"""Spec §10 cases 1–20: the accepted block syntax and its tolerated spellings.

Each case is checked for the non-stream parser and for the stream cut at
every position (see ``outcomes``).
"""

from __future__ import annotations

import json

import pytest
from test_toolcall_harness import TOOLS, assert_unchanged, block, invoke, outcomes

from ds2proxy.canonical import ToolSpec


def test_01_dsml_block_is_one_call_and_no_text() -> None:
    text = ('<|DSML|tool_calls><|DSML|invoke name="Bash"><|DSML|parameter name="command">'
            "<![CDATA[pwd]]></|DSML|parameter></|DSML|invoke></|DSML|tool_calls>")
    result = outcomes(text)
    assert result.calls == (("Bash", '{"command":"pwd"}', "function"),)
    assert result.text == ""


def test_02_plain_tags_and_plain_value_keep_the_declared_spelling() -> None:
    text = block(invoke("bash", ("command", "ls -la"), cdata=False))
    result = outcomes(text)
    assert result.names == ["Bash"]
    assert json.loads(result.args()) == {"command": "ls -la"}
    assert result.text == ""


def test_03_hyphenated_dsml_keeps_a_heredoc_byte_for_byte() -> None:
    command = 'git commit -m "$(cat <<\'EOF\'\nFix the parser\n\nDetails & more\nEOF\n)"'
    text = ('<dsml-tool-calls><dsml-invoke name="Bash">'
            f'<dsml-parameter name="command"><![CDATA[{command}]]></dsml-parameter>'
            '<dsml-parameter name="description"><![CDATA[Create commit]]></dsml-parameter>'
            "</dsml-invoke></dsml-tool-calls>")
    result = outcomes(text)
    assert json.loads(result.args()) == {"command": command, "description": "Create commit"}
    assert result.text == ""


def test_04_hyphen_without_prefix_is_not_a_tag() -> None:
    text = '<tool-calls><invoke name="Bash">' + "</invoke></tool-calls>"
    assert_unchanged(text)


@pytest.mark.parametrize(("timeout_type", "expected"), [(None, 10), ("string", "10")])
def test_05_trailing_pipe_opener_and_typed_timeout(timeout_type: str | None,
                                                   expected: object) -> None:
    props = {"command": {"type": "string"}}
    if timeout_type:
        props["timeout"] = {"type": timeout_type}
    tools = [ToolSpec("Bash", parameters={"type": "object", "properties": props})]
    text = ('<|DSML|tool_calls| \n<|DSML|invoke name="Bash">\n'
            '<|DSML|parameter name="command"><![CDATA[find "./data" -type d]]></|DSML|parameter>\n'
            '<|DSML|parameter name="timeout"><![CDATA[10]]></|DSML|parameter>\n'
            "</|DSML|invoke>\n</|DSML|tool_calls>")
    result = outcomes(text, tools)
    assert json.loads(result.args()) == {"command": 'find "./data" -type d', "timeout": expected}
    assert result.text == ""


def test_06_doubled_angle_brackets_leave_no_stray_bracket() -> None:
    text = ('<<|DSML|tool_calls><<|DSML|invoke name="Bash"><<|DSML|parameter name="command">'
            "<![CDATA[pwd]]></|DSML|parameter></|DSML|invoke></|DSML|tool_calls>")
    result = outcomes(text)
    assert result.names == ["Bash"]
    assert "<" not in result.text
    assert result.text == ""


def test_07_repeated_dsml_prefix() -> None:
    text = ('<<DSML|DSML|tool_calls><<DSML|DSML|invoke name="Bash">'
            '<<DSML|DSML|parameter name="command"><![CDATA[git status]]></DSML|DSML|parameter>'
            "</DSML|DSML|invoke></DSML|DSML|tool_calls>")
    result = outcomes(text)
    assert result.calls == (("Bash", '{"command":"git status"}', "function"),)
    assert result.text == ""


def test_08_space_instead_of_pipe() -> None:
    text = ('<|DSML tool_calls>\n<|DSML invoke name="Read">\n'
            '<|DSML parameter name="file_path"><![CDATA[notes/input.txt]]></|DSML parameter>\n'
            "</|DSML invoke>\n</|DSML tool_calls>")
    result = outcomes(text)
    assert result.calls == (("Read", '{"file_path":"notes/input.txt"}', "function"),)


def test_09_longer_tag_name_with_space_prefix_is_text() -> None:
    text = ('<|DSML tool_calls_extra><|DSML invoke_x name="Read">x</|DSML invoke_x>'
            "</|DSML tool_calls_extra>")
    assert_unchanged(text)


def test_10_glued_dsml_prefix_and_text_before_the_block() -> None:
    todos = "[x] step 1\n[x] step 2"
    text = ('[]\n<DSMLtool_calls>\n<DSMLinvoke name="update_todo_list">\n'
            f'<DSMLparameter name="todos"><![CDATA[{todos}]]></DSMLparameter>\n'
            "</DSMLinvoke>\n</DSMLtool_calls>")
    result = outcomes(text)
    assert result.names == ["update_todo_list"]
    assert json.loads(result.args()) == {"todos": todos}
    assert result.text == "[]\n"


def test_11_glued_prefix_with_longer_name_is_text() -> None:
    text = '<DSMLtool_calls_extra><DSMLinvoke_more name="Read"></DSMLinvoke_more>'
    assert_unchanged(text)


def test_12_fullwidth_bar_wrapper_with_plain_inner_tags() -> None:
    text = ('<｜tool_calls>\n<invoke name="read_file"><parameter name="path">a.txt</parameter>'
            "</invoke>\n</｜tool_calls>")
    result = outcomes(text)
    assert result.calls == (("read_file", '{"path":"a.txt"}', "function"),)
    assert result.text == ""


def test_13_wrapper_split_mid_name_then_two_calls() -> None:
    chunks = ["<｜DSML|tool", "_calls>",
              invoke("Bash", ("command", "pwd"), dsml=True)
              + invoke("Bash", ("command", "ls"), dsml=True),
              "</|DSML|tool_calls>"]
    result = outcomes(chunks)
    assert result.calls == (("Bash", '{"command":"pwd"}', "function"),
                            ("Bash", '{"command":"ls"}', "function"))
    assert result.text == ""


def test_14_dsml_and_plain_tags_mixed() -> None:
    text = ('<|DSML|tool_calls><invoke name="Bash"><|DSML|parameter name="command">'
            "<![CDATA[pwd]]></|DSML|parameter></invoke></|DSML|tool_calls>")
    result = outcomes(text)
    assert result.names == ["Bash"]
    assert result.text == ""


def test_15_prefix_without_leading_pipe_leaves_no_dsml_text() -> None:
    text = ('<DSML|tool_calls><|DSML|invoke name="Bash"><|DSML|parameter name="command">'
            "<![CDATA[pwd]]></|DSML|parameter></|DSML|invoke></DSML|tool_calls>")
    result = outcomes(text)
    assert result.names == ["Bash"]
    assert "dsml" not in result.text.lower()


def test_16_missing_opener_is_repaired_and_prose_kept() -> None:
    text = ('Before tool call\n<invoke name="read_file"><parameter name="path">README.md'
            "</parameter></invoke>\n</tool_calls>\nafter")
    result = outcomes(text)
    assert result.calls == (("read_file", '{"path":"README.md"}', "function"),)
    assert result.text == "Before tool call\n\nafter"


def test_17_bare_invoke_at_the_end_is_released_verbatim() -> None:
    text = '<invoke name="read_file"><parameter name="path">README.md</parameter></invoke>'
    assert_unchanged(text)


def test_18_legacy_xml_family_is_text() -> None:
    text = ('<tools><tool_call><tool_name>read_file</tool_name>'
            '<param>{"path":"README.md"}</param></tool_call></tools>')
    assert_unchanged(text)


@pytest.mark.parametrize("text", [
    "<tool><tool_name>Bash</tool_name><param><command>pwd</command></param></tool>",
    "<function_call>Bash</function_call><arguments>pwd</arguments>",
    '<function_calls><function_call name="Bash"><argument name="command">pwd</argument>'
    "</function_call></function_calls>",
])
def test_19_other_families_are_not_calls(text: str) -> None:
    assert_unchanged(text)


def test_19_invoke_under_a_foreign_wrapper_is_not_a_call() -> None:
    text = ('<function_calls><invoke name="Bash"><parameter name="command">pwd</parameter>'
            "</invoke></function_calls>")
    assert_unchanged(text)


def test_19_canonical_block_is_a_call() -> None:
    result = outcomes(block(invoke("Bash", ("command", "pwd"))))
    assert result.names == ["Bash"]


def test_20_pure_json_is_text_in_design_b() -> None:
    text = '{"tool_calls":[{"name":"search","input":{"q":"go"}}]}'
    assert_unchanged(text)


def test_declared_tool_set_is_what_the_cases_assume() -> None:
    names = {t.name for t in TOOLS}
    assert {"Bash", "read_file", "Read", "search", "Write"} <= names


@pytest.mark.parametrize("opener", [
    "<|DSML|tool_calls>", "<｜DSML｜tool_calls>", "<｜DSML|tool_calls>", "<DSML|tool_calls>",
    "<|tool_calls>", "<｜tool_calls>", "<dsml|tool_calls>", "<|DSML tool_calls>",
    "<DSMLtool_calls>", "<dsml-tool-calls>", "<dsml_tool_calls>", "<<|DSML|tool_calls>",
    "<<DSML|DSML|tool_calls>", "<|DSML|tool_calls|", "<tool_calls>", "<TOOL_CALLS>",
])
def test_every_wrapper_spelling_opens_a_block(opener: str) -> None:
    text = opener + '\n<invoke name="noop"></invoke>\n</tool_calls>'
    result = outcomes(text)
    assert result.calls == (("noop", "{}", "function"),)
    assert result.text == ""


@pytest.mark.parametrize("opener", [
    "<tool-calls>", "<tool_call>", "<tools>", "<function_calls>", "<function_call>",
    "<tool_use>", "<tool_name>", "<|DSML tool_calls_extra>", "<DSMLtool_calls_extra>",
])
def test_look_alike_wrappers_are_text(opener: str) -> None:
    text = opener + '\n<invoke name="noop"></invoke>\n' + opener.replace("<", "</", 1)
    assert_unchanged(text)


def test_non_ascii_case_folding_next_to_a_tag_keeps_offsets() -> None:
    text = "İİİ ſ K\n" + block(invoke("read_file", ("path", "İ.txt")))
    result = outcomes(text)
    assert result.calls == (("read_file", '{"path":"İ.txt"}', "function"),)
    assert result.text == "İİİ ſ K\n"


def test_several_wrappers_in_one_answer_with_prose_between() -> None:
    text = ("one\n" + block(invoke("search", ("q", "a"))) + "\ntwo\n"
            + block(invoke("search", ("q", "b")), invoke("search", ("q", "c"))) + "\nthree")
    result = outcomes(text)
    assert [json.loads(result.args(i))["q"] for i in range(3)] == ["a", "b", "c"]
    assert result.text == "one\n\ntwo\n\nthree"


def test_self_closing_invoke_is_a_zero_argument_call() -> None:
    result = outcomes('<tool_calls><invoke name="noop"/></tool_calls>')
    assert result.calls == (("noop", "{}", "function"),)


READ = invoke("read_file", ("path", "README.md"))
READ_CALL = (("read_file", '{"path":"README.md"}', "function"),)


@pytest.mark.parametrize("remark", ["<!-- the call -->", "<!---->", "<!-- a <tool_calls> -->",
                                    "<!-- one -->\n<!-- two -->"])
def test_a_comment_between_the_wrapper_and_its_invoke_is_part_of_the_block(remark: str) -> None:
    """Comments are ignored regions (§3.1), not text after the wrapper (§4.5):
    the opener and the comment were shown as a mention, the call still ran."""
    result = outcomes(f"Reading.\n<tool_calls>\n  {remark}\n  {READ}\n</tool_calls>\nDone.")
    assert result.calls == READ_CALL
    assert result.text == "Reading.\n\nDone."


def test_a_comment_before_a_bare_invoke_and_its_parameters_is_skipped() -> None:
    text = ('<invoke name="read_file"><!-- path -->\n<parameter name="path">README.md'
            "</parameter></invoke>\n<!-- end -->\n</tool_calls>")
    assert outcomes(text).calls == READ_CALL


def test_a_wrapper_followed_by_a_long_unclosed_comment_is_a_mention() -> None:
    """Waiting for a comment's end is bounded: the text after a mention is not
    held back to the end of the answer."""
    text = "The <tool_calls> tag <!-- " + "x" * 3000 + "\nmore prose"
    assert_unchanged(text)
    assert outcomes(text + f"\n{block(READ)}").calls == READ_CALL


@pytest.mark.parametrize("text", [
    f"<tool_calls><tool_calls>{READ}</tool_calls></tool_calls>",
    f"<tool_calls>\n<|DSML|tool_calls>\n{READ}\n</|DSML|tool_calls>\n</tool_calls>",
    f"<tool_calls><!-- x --><tool_calls>{READ}</tool_calls>",
    f"<tool_calls>{READ}</tool_calls></tool_calls>",
    f"<tool_calls>{READ}</tool_calls> </tool_calls></tool_calls>",
])
def test_a_doubled_wrapper_is_one_block_and_leaves_no_tags(text: str) -> None:
    """The wrapper's opener or closer written twice: its tags were shown as text."""
    result = outcomes("Reading.\n" + text + "\nDone.")
    assert result.calls == READ_CALL
    assert result.text.split() == ["Reading.", "Done."]


def test_a_lone_closing_wrapper_after_prose_stays_text() -> None:
    """Only a closer right after a block is the block's: after prose it is text (§10, 67)."""
    text = f"{block(READ)}\nthen </tool_calls> in prose"
    result = outcomes(text)
    assert result.calls == READ_CALL
    assert result.text == "\nthen </tool_calls> in prose"
