"""§1 the tool prompt: what is described, the format, and examples built only
from declared tools."""

from __future__ import annotations

import json
import re

import pytest
from toolcall_oracle import parse_turn

from ds2proxy.canonical import ToolChoice, ToolSpec
from ds2proxy.toolcall import build_tool_prompt

BASH = ToolSpec("Bash", "Run a command", {"type": "object", "properties": {
    "command": {"type": "string"}, "description": {"type": "string"}}})
READ = ToolSpec("Read", "", {"type": "object", "properties": {"file_path": {"type": "string"}}})
WEATHER = ToolSpec("get_weather", "Weather for a city", {"type": "object", "properties": {
    "city": {"type": "string"}}})
MULTI = ToolSpec("MultiEdit")
PATCH = ToolSpec("apply_patch", "Apply a patch", kind="custom")
AUTO = ToolChoice()
_INVOKED = re.compile(r'invoke name="([^"]+)"')


def blocks(prompt: str) -> list[str]:
    return re.findall(r"<\|DSML\|tool_calls>.*?</\|DSML\|tool_calls>", prompt, re.DOTALL)


def test_nothing_without_tools_or_with_choice_none() -> None:
    assert build_tool_prompt([], AUTO) == ""
    assert build_tool_prompt([BASH], ToolChoice("none")) == ""


def test_each_tool_is_described_with_its_schema() -> None:
    prompt = build_tool_prompt([BASH, READ, MULTI], AUTO)
    assert prompt.startswith("You have access to these tools:")
    assert "Tool: Bash\nDescription: Run a command\nParameters: " + json.dumps(
        BASH.parameters, separators=(",", ":")) in prompt
    assert "Tool: Read\nDescription: No description available\n" in prompt
    assert "Tool: MultiEdit\nDescription: No description available\nParameters: null" in prompt


def test_format_skeleton_and_rules() -> None:
    prompt = build_tool_prompt([WEATHER], AUTO)
    assert '<|DSML|invoke name="TOOL_NAME_HERE">' in prompt
    assert "<![CDATA[PARAMETER_VALUE]]>" in prompt
    for phrase in ("CDATA", "<item>", "never invent", "Markdown code fences",
                   "never leave it out", "<tool_calls>", "at the end of your response"):
        assert phrase in prompt


def test_only_tools_allowed_by_choice_are_described() -> None:
    forced = build_tool_prompt([BASH, WEATHER], ToolChoice("forced", name="get_weather"))
    assert "Tool: get_weather" in forced and "Tool: Bash" not in forced
    assert "you MUST call exactly this tool: get_weather" in forced
    allowed = build_tool_prompt([BASH, READ, WEATHER],
                                ToolChoice("auto", allowed=frozenset({"Read"})))
    assert "Tool: Read" in allowed and "Tool: Bash" not in allowed


def test_no_examples_for_unknown_tools_and_no_undeclared_names() -> None:
    prompt = build_tool_prompt([WEATHER], AUTO)
    assert "CORRECT EXAMPLES" not in prompt
    assert set(_INVOKED.findall(prompt)) == {"TOOL_NAME_HERE"}


def test_examples_use_only_declared_tools_and_parse_back() -> None:
    tools = [BASH, READ, MULTI, WEATHER]
    prompt = build_tool_prompt(tools, AUTO)
    assert set(_INVOKED.findall(prompt)) <= {"TOOL_NAME_HERE", "Bash", "Read", "MultiEdit"}
    examples = prompt[prompt.index("CORRECT EXAMPLES"):]
    found = [parse_turn(b, tools, AUTO).calls for b in blocks(examples)]
    assert [len(calls) for calls in found] == [1, 2, 1, 1]
    nested = found[2][0]
    assert nested.name == "MultiEdit"
    assert nested.arguments["edits"][0] == {"new_string": "x = 2", "old_string": "x = 1"}
    script = found[3][0]
    assert script.name == "Bash" and "\n" in script.arguments["command"]


def test_example_skipped_when_the_schema_lacks_its_parameters() -> None:
    odd_bash = ToolSpec("Bash", "", {"type": "object", "properties": {"script": {"type": "string"}}})
    prompt = build_tool_prompt([odd_bash], AUTO)
    assert "CORRECT EXAMPLES" not in prompt


def test_read_cache_guard_only_for_read_tools() -> None:
    assert "READ RESULTS" in build_tool_prompt([READ], AUTO)
    assert "READ RESULTS" in build_tool_prompt([ToolSpec("read_file")], AUTO)
    assert "READ RESULTS" not in build_tool_prompt([BASH], AUTO)


@pytest.mark.parametrize(("choice", "single", "line"), [
    (ToolChoice("required"), False, "MUST call at least one tool"),
    (ToolChoice("forced", name="Bash"), False, "Do not call any other tool"),
    (AUTO, True, "Call at most one tool in this response."),
])
def test_choice_and_single_call_lines(choice: ToolChoice, single: bool, line: str) -> None:
    assert line in build_tool_prompt([BASH], choice, single_call=single)
    assert line not in build_tool_prompt([BASH], AUTO)


def test_custom_tool_takes_one_text_input() -> None:
    prompt = build_tool_prompt([PATCH], AUTO)
    assert "Tool: apply_patch" in prompt
    assert '"input":{"type":"string"}' in prompt
    assert 'ONE text parameter named "input"' in prompt
