"""Past tool calls rendered as DSML (prompt-compat §3.4)."""

from __future__ import annotations

import pytest

from ds2proxy.canonical import ToolCall
from ds2proxy.prompt import render_tool_calls


def params(arguments, *, kind="function") -> list[str]:
    """The parameter lines of a single rendered call, without indentation."""
    lines = render_tool_calls([ToolCall("c1", "t", arguments, kind=kind)]).split("\n")
    return [line.strip() for line in lines[2:-2]]


def param(name: str, inner: str) -> str:
    return f'<|DSML|parameter name="{name}">{inner}</|DSML|parameter>'


def test_one_wrapper_one_invoke_per_call_with_indentation():
    text = render_tool_calls([ToolCall("a", "Read", {"file_path": "x"}),
                              ToolCall("b", "Bash", {"command": "ls"})])
    assert text.split("\n") == [
        "<|DSML|tool_calls>",
        '  <|DSML|invoke name="Read">',
        '    <|DSML|parameter name="file_path"><![CDATA[x]]></|DSML|parameter>',
        "  </|DSML|invoke>",
        '  <|DSML|invoke name="Bash">',
        '    <|DSML|parameter name="command"><![CDATA[ls]]></|DSML|parameter>',
        "  </|DSML|invoke>",
        "</|DSML|tool_calls>",
    ]


def test_top_level_keys_are_sorted():
    assert params({"b": "2", "a": "1"}) == [param("a", "<![CDATA[1]]>"),
                                            param("b", "<![CDATA[2]]>")]


def test_embedded_cdata_end_is_split():
    assert params({"s": "a]]>b"}) == [param("s", "<![CDATA[a]]]]><![CDATA[>b]]>")]


@pytest.mark.parametrize(("value", "inner"), [
    (3, "3"), (2.5, "2.5"), (True, "true"), (False, "false"), (None, ""),
    ("", "<![CDATA[]]>"), ({}, ""), ([], ""),
])
def test_scalar_and_empty_values_at_top_level(value, inner):
    assert params({"k": value}) == [param("k", inner)]


def test_numbers_and_booleans_stay_plain_when_nested():
    nested = {"o": {"n": 7, "f": 0.5, "b": True, "z": None, "s": "x", "l": [1, False]}}
    assert params(nested) == [param(
        "o", "<b>true</b><f>0.5</f><l><item>1</item><item>false</item></l>"
        "<n>7</n><s><![CDATA[x]]></s><z></z>")]


def test_nested_objects_are_sorted_children():
    assert params({"loc": {"zip": "75", "city": {"name": "Paris"}}}) == [param(
        "loc", "<city><name><![CDATA[Paris]]></name></city><zip><![CDATA[75]]></zip>")]


def test_arrays_use_item_children_at_every_depth():
    assert params({"tags": ["a"], "o": {"tags": ["b", ["c"]]}}) == [
        param("o", "<tags><item><![CDATA[b]]></item><item><item><![CDATA[c]]></item></item>"
                   "</tags>"),
        param("tags", "<item><![CDATA[a]]></item>"),
    ]


def test_invalid_nested_key_puts_whole_arguments_in_content():
    args = {"q": "x", "opts": {"two words": 1}}
    assert params(args) == [param("content", '<![CDATA[{"q":"x","opts":{"two words":1}}]]>')]


def test_invalid_nested_key_keeps_the_original_argument_text():
    raw = '{"opts": [{"1st": true}]}'
    assert params(raw) == [param("content", f"<![CDATA[{raw}]]>")]


def test_any_top_level_key_is_allowed_and_attribute_escaped():
    assert params({'a b&"<>': "v"}) == [param("a b&amp;&quot;&lt;&gt;", "<![CDATA[v]]>")]


def test_glued_json_documents_are_kept_verbatim():
    assert params('{}{"query":"x"}') == [param("content", '<![CDATA[{}{"query":"x"}]]>')]


def test_json_string_arguments_are_parsed_first():
    assert params('{"city": "Paris", "days": 2}') == [param("city", "<![CDATA[Paris]]>"),
                                                      param("days", "2")]


@pytest.mark.parametrize(("arguments", "expected"), [
    ("just text", [param("content", "<![CDATA[just text]]>")]),
    ('"quoted"', [param("content", "<![CDATA[quoted]]>")]),
    (42, [param("value", "42")]),
    ("true", [param("value", "true")]),
    (None, [param("value", "")]),
    (["a", 1], [param("item", "<![CDATA[a]]>"), param("item", "1")]),
    ("", []),
])
def test_bare_arguments(arguments, expected):
    assert params(arguments) == expected


def test_custom_tool_text_is_not_parsed_as_json():
    # The tool prompt describes freeform tools as taking one "input" text.
    assert params("42", kind="custom") == [param("input", "<![CDATA[42]]>")]


def test_tool_name_is_attribute_escaped():
    text = render_tool_calls([ToolCall("c", 'a&b"<c>', {})])
    assert '<|DSML|invoke name="a&amp;b&quot;&lt;c&gt;">' in text


def test_calls_without_a_name_are_skipped():
    text = render_tool_calls([ToolCall("a", "", {"x": 1}), ToolCall("b", "Keep", {})])
    assert text.count("<|DSML|invoke") == 1
    assert 'name="Keep"' in text
    assert render_tool_calls([ToolCall("a", "  ", {})]) == ""
