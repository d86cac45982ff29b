"""Spec §10 cases 38–46: which blocks count, which are suppressed, which are text."""

from __future__ import annotations

import json

import pytest
from test_toolcall_harness import assert_unchanged, block, fed_texts, invoke, outcomes

from ds2proxy.canonical import ToolSpec


def test_38_all_empty_parameters_are_no_call_and_no_text() -> None:
    text = "Checking.\n" + block(
        '<invoke name="Bash"><parameter name="command"></parameter>'
        '<parameter name="description">   </parameter><parameter name="timeout"></parameter>'
        "</invoke>") + "\nDone."
    result = outcomes(text)
    assert result.calls == ()
    assert result.text == "Checking.\n\nDone."


def test_39_invoke_without_parameters_is_a_zero_argument_call() -> None:
    result = outcomes('<tool_calls><invoke name="noop"></invoke></tool_calls>')
    assert result.calls == (("noop", "{}", "function"),)
    assert result.text == ""


def test_40_json_body_inside_invoke() -> None:
    text = block('<invoke name="Bash">{"input":{"command":"pwd","description":"show cwd"}}'
                 "</invoke>")
    result = outcomes(text)
    assert json.loads(result.args()) == {"command": "pwd", "description": "show cwd"}


def test_41_mismatched_parameter_close_is_no_call() -> None:
    text = block('<invoke name="read_file"><parameter name="path">README.md</function></invoke>')
    result = outcomes(text)
    assert result.calls == ()
    assert result.text == ""


def test_42_invoke_without_name_is_no_call() -> None:
    text = block('<invoke><parameter name="name">read_file</parameter></invoke>')
    result = outcomes(text)
    assert result.calls == ()
    assert result.text == ""


def test_43_foreign_children_in_invoke_suppress_the_block() -> None:
    text = block('<invoke name="read_file"><param>{"path":"README.md"}</param></invoke>')
    result = outcomes(text)
    assert result.calls == ()
    assert result.text == ""


def test_44_wrapper_without_invoke_is_a_mention_shown_unchanged() -> None:
    text = "<tool_calls>\nthere is no invoke here\n</tool_calls>\nrest"
    assert_unchanged(text)


def test_45_undeclared_name_is_rejected_silently() -> None:
    tools = [ToolSpec("search")]
    text = block(invoke("not_in_schema", ("q", "go"), cdata=False))
    result = outcomes(text, tools)
    assert result.calls == ()
    assert result.text == ""


def test_46_tolerant_names_take_the_declared_spelling() -> None:
    tools = [ToolSpec("search_web")]
    text = block(invoke("mcp.search_web", ("query", "a")), invoke("Search-Web", ("query", "b")))
    result = outcomes(text, tools)
    assert result.names == ["search_web", "search_web"]
    assert [json.loads(result.args(i))["query"] for i in range(2)] == ["a", "b"]


def test_wrapper_followed_by_cdata_is_a_mention_released_at_once() -> None:
    chunks = ["See <tool_calls> <![CDATA[ for strings", " and more"]
    assert "".join(fed_texts(chunks)) == "".join(chunks)
    assert_unchanged(chunks)


def test_json_body_with_only_empty_values_is_no_call() -> None:
    text = block('<invoke name="Bash">{"input":{"command":"","description":"  "}}</invoke>')
    result = outcomes(text)
    assert result.calls == ()
    assert result.text == ""


WEATHER = [ToolSpec("get_天气"), ToolSpec("get_查询"), ToolSpec("查询天气"), ToolSpec("Ünïcode_Tool")]


@pytest.mark.parametrize(("written", "meant"), [
    ("get-查询", "get_查询"), ("GET_天气", "get_天气"), ("tools.查询天气", "查询天气"),
    ("ünïcode-tool", "Ünïcode_Tool"), ("查询天气", "查询天气"),
])
def test_tolerant_names_keep_letters_of_every_script(written: str, meant: str) -> None:
    """The letters-and-digits step kept ASCII only: ``get-查询`` became ``get``
    and ran ``get_天气``, the first tool of that ASCII skeleton."""
    result = outcomes(block(invoke(written, ("q", "x"))), WEATHER)
    assert result.names == [meant]


def test_a_tolerant_name_that_fits_two_tools_is_refused() -> None:
    tools = [ToolSpec("search_web"), ToolSpec("search-web"), ToolSpec("Read"), ToolSpec("read")]
    for written in ("SearchWeb", "READ"):
        result = outcomes(block(invoke(written, ("q", "x"))), tools)
        assert result.calls == () and result.text == ""
    assert outcomes(block(invoke("read", ("q", "x"))), tools).names == ["read"]


def test_a_tool_declared_twice_is_still_called() -> None:
    tools = [ToolSpec("search"), ToolSpec("search")]
    assert outcomes(block(invoke("Search", ("q", "x"))), tools).names == ["search"]
