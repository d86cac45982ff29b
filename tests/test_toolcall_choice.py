"""§6 tool_choice parsing per dialect, its request-time errors, and §9 settings."""

from __future__ import annotations

import pytest

from ds2proxy.canonical import ToolChoice, ToolSpec
from ds2proxy.config import ConfigError, parse_config
from ds2proxy.config_fields import unknown_field_messages
from ds2proxy.config_sections import ToolcallSettings
from ds2proxy.dialects.tool_choice import (
    parse_anthropic_tool_choice,
    parse_gemini_tool_config,
    parse_openai_tool_choice,
)
from ds2proxy.errors import InvalidRequest

TOOLS = [ToolSpec("read_file"), ToolSpec("search"), ToolSpec("apply_patch", kind="custom")]


@pytest.mark.parametrize(("value", "expected"), [
    (None, ToolChoice()),
    ("auto", ToolChoice()),
    ("", ToolChoice()),
    ("none", ToolChoice("none")),
    ("required", ToolChoice("required")),
    ({"type": "function", "name": "search"}, ToolChoice("forced", name="search")),
    ({"type": "function", "function": {"name": "search"}}, ToolChoice("forced", name="search")),
    ({"type": "auto", "name": "search"}, ToolChoice("forced", name="search")),
    ({"type": "custom", "name": "apply_patch"}, ToolChoice("forced", name="apply_patch")),
    ({"type": "required"}, ToolChoice("required")),
    ({"type": "none"}, ToolChoice("none")),
    ({"type": "auto", "allowed_tools": ["search", {"name": "read_file"}]},
     ToolChoice("auto", allowed=frozenset({"search", "read_file"}))),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
        {"type": "function", "function": {"name": "search"}}]}},
     ToolChoice("required", allowed=frozenset({"search"}))),
    ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "search"}]},
     ToolChoice("auto", allowed=frozenset({"search"}))),
])
def test_openai_forms(value: object, expected: ToolChoice) -> None:
    assert parse_openai_tool_choice(value, TOOLS) == expected


@pytest.mark.parametrize(("value", "tools"), [
    ("sometimes", TOOLS),
    ({"type": "web_search"}, TOOLS),
    (42, TOOLS),
    (["auto"], TOOLS),
    ({"type": "function"}, TOOLS),
    ({"type": "function", "name": "write"}, TOOLS),
    ("required", []),
    ({"type": "function", "name": "search"}, []),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}, TOOLS),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"x": 1}]}}, TOOLS),
    ({"type": "allowed_tools", "allowed_tools": {"mode": "maybe", "tools": ["search"]}}, TOOLS),
    ({"type": "auto", "allowed_tools": ["nope"]}, TOOLS),
    ({"type": "allowed_tools", "allowed_tools": "search"}, TOOLS),
])
def test_openai_errors_name_the_parameter(value: object, tools: list[ToolSpec]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_openai_tool_choice(value, tools)
    assert caught.value.param == "tool_choice"
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"


def test_none_and_auto_need_no_tools() -> None:
    assert parse_openai_tool_choice("none", []) == ToolChoice("none")
    assert parse_openai_tool_choice("auto", []) == ToolChoice()


@pytest.mark.parametrize(("value", "expected"), [
    (None, (ToolChoice(), False)),
    ({"type": "auto"}, (ToolChoice(), False)),
    ({"type": "any"}, (ToolChoice("required"), False)),
    ({"type": "tool", "name": "search"}, (ToolChoice("forced", name="search"), False)),
    ({"type": "none"}, (ToolChoice("none"), False)),
    ({"type": "auto", "disable_parallel_tool_use": True}, (ToolChoice(), True)),
    ({"type": "any", "disable_parallel_tool_use": False}, (ToolChoice("required"), False)),
])
def test_anthropic_forms(value: object, expected: tuple[ToolChoice, bool]) -> None:
    assert parse_anthropic_tool_choice(value, TOOLS) == expected


@pytest.mark.parametrize("value", [
    "auto", {"type": "tool"}, {"type": "tool", "name": "write"}, {"type": "function"},
    {"type": "auto", "disable_parallel_tool_use": "yes"},
])
def test_anthropic_errors(value: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_anthropic_tool_choice(value, TOOLS)
    assert caught.value.param == "tool_choice"


def test_errors_name_what_was_sent_briefly() -> None:
    """An undeclared name is echoed cut short, and a long list of them by its
    first few and a count: a 3 MB name came back whole in the 400's body."""
    with pytest.raises(InvalidRequest) as caught:
        parse_anthropic_tool_choice({"type": "tool", "name": "N" * 3_000_000}, TOOLS)
    assert "NNN" in caught.value.message and len(caught.value.message) < 300
    names = [f"t{i:04d}" + "x" * 1000 for i in range(3000)]
    with pytest.raises(InvalidRequest) as caught:
        parse_openai_tool_choice({"type": "allowed_tools", "allowed_tools": {
            "mode": "auto", "tools": names}}, TOOLS)
    message = caught.value.message
    assert message.startswith("invalid tool_choice: allowed tools not declared: t0000x")
    assert message.endswith(" and 2995 more") and len(message) < 1000


def test_anthropic_any_without_tools_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        parse_anthropic_tool_choice({"type": "any"}, [])


@pytest.mark.parametrize(("value", "expected"), [
    (None, ToolChoice()),
    ({}, ToolChoice()),
    ({"functionCallingConfig": {"mode": "AUTO"}}, ToolChoice()),
    ({"functionCallingConfig": {"mode": "ANY"}}, ToolChoice("required")),
    ({"functionCallingConfig": {"mode": "NONE"}}, ToolChoice("none")),
    ({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["search"]}},
     ToolChoice("forced", name="search")),
    ({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["search", "read_file"]}},
     ToolChoice("required", allowed=frozenset({"search", "read_file"}))),
    ({"function_calling_config": {"mode": "any", "allowed_function_names": ["search"]}},
     ToolChoice("forced", name="search")),
    ({"mode": "NONE"}, ToolChoice("none")),
    # An empty repeated field is an unset one (SDKs serialising defaults send it).
    ({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": []}},
     ToolChoice("required")),
    ({"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": []}}, ToolChoice()),
])
def test_gemini_forms(value: object, expected: ToolChoice) -> None:
    assert parse_gemini_tool_config(value, TOOLS) == expected


@pytest.mark.parametrize("value", [
    "ANY",
    {"functionCallingConfig": {"mode": "SOMETIMES"}},
    {"functionCallingConfig": {"mode": 3}},
    {"functionCallingConfig": "ANY"},
    {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["write"]}},
])
def test_gemini_errors(value: object) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_gemini_tool_config(value, TOOLS)
    assert caught.value.param == "tool_choice"


def test_settings_defaults_and_values() -> None:
    assert parse_config({}).toolcall == ToolcallSettings("feature_match", "high")
    parsed = parse_config({"toolcall": {"mode": "off", "early_emit_confidence": "low"}})
    assert parsed.toolcall == ToolcallSettings("off", "low")


@pytest.mark.parametrize(("settings", "field"), [
    ({"mode": "sometimes"}, "toolcall.mode"),
    ({"early_emit_confidence": "maybe"}, "toolcall.early_emit_confidence"),
    ({"early_emit_confidence": 3}, "toolcall.early_emit_confidence"),
])
def test_settings_errors_name_the_field(settings: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"toolcall": settings})
    assert caught.value.field == field


def test_misspelt_setting_is_named_with_a_guess() -> None:
    [message] = unknown_field_messages({"toolcall": {"early_emit": "high"}})
    assert "'toolcall.early_emit'" in message
    assert "did you mean 'toolcall.early_emit_confidence'" in message


# Two namespaces' ``search`` are declared qualified; ``open_issue`` keeps its own name.
NAMESPACED = [ToolSpec("mcp__github.search"), ToolSpec("mcp__jira.search"),
              ToolSpec("open_issue"), ToolSpec("search_web")]


@pytest.mark.parametrize(("value", "expected"), [
    ({"type": "function", "name": "mcp__github.search"},
     ToolChoice("forced", name="mcp__github.search")),
    ({"type": "function", "name": "open_issue"}, ToolChoice("forced", name="open_issue")),
    ({"type": "function", "name": "search"},
     ToolChoice("required", allowed=frozenset({"mcp__github.search", "mcp__jira.search"}))),
    ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "search"}]},
     ToolChoice("auto", allowed=frozenset({"mcp__github.search", "mcp__jira.search"}))),
])
def test_a_namespaced_tool_is_named_by_its_own_name(value: object, expected: ToolChoice) -> None:
    """The official tool_choice names a function by its own name only: naming
    a tool two namespaces share was a 400 'not declared'."""
    assert parse_openai_tool_choice(value, NAMESPACED) == expected


@pytest.mark.parametrize("name", ["github.search", "earch", "search_web.x", "jira.search"])
def test_a_name_that_is_no_tool_s_own_stays_a_400(name: str) -> None:
    with pytest.raises(InvalidRequest, match="not declared"):
        parse_openai_tool_choice({"type": "function", "name": name}, NAMESPACED)
