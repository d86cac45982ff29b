"""Spec §10 cases 21–37: parameter values — CDATA, typing, nesting, schema."""

from __future__ import annotations

import json

import pytest
from test_toolcall_harness import (
    block,
    cut,
    first_call_offset,
    invoke,
    outcome_of,
    outcomes,
    stream_events,
)

from ds2proxy.canonical import ToolCall, ToolSpec
from ds2proxy.prompt.dsml import render_tool_calls

UNTYPED = [ToolSpec("probe"), ToolSpec("execute_command"),
           ToolSpec("Write", parameters={"type": "object", "properties": {
               "file_path": {"type": "string"}, "content": {"type": "string"}}})]


def args_of(text: str, tools: list[ToolSpec] = UNTYPED) -> dict[str, object]:
    result = outcomes(text, tools)
    assert len(result.calls) == 1
    assert result.text == ""
    return json.loads(result.args())


def test_21_block_inside_cdata_is_the_value_not_a_call() -> None:
    inner = '<tool_calls><invoke name="demo"><parameter name="value">x</parameter></invoke></tool_calls>'
    text = block(invoke("Write", ("file_path", "demo.xml"), ("content", inner)))
    assert args_of(text)["content"] == inner


def _heredoc() -> str:
    example = ('<|DSML|tool_calls>\n  <|DSML|invoke name="Bash">\n'
               '    <|DSML|parameter name="command"><![CDATA[ls]]></|DSML|parameter>\n'
               "  </|DSML|invoke>\n</|DSML|tool_calls>")
    return ("cat > docs/tools.md <<'ENDOFFILE'\n# Tool syntax\n\n```xml\n" + example
            + "\n```\nENDOFFILE\necho written")


def test_22_heredoc_with_fenced_example_is_one_command() -> None:
    command = _heredoc()
    text = block(invoke("Bash", ("command", command), ("description", "Write docs"), dsml=True),
                 dsml=True)
    tools = [ToolSpec("Bash")]
    assert args_of(text, tools) == {"command": command, "description": "Write docs"}


@pytest.mark.parametrize(("mode", "marker"), [("high", "</|DSML|invoke>"),
                                              ("off", "</|DSML|tool_calls>")])
def test_22_fake_closing_tags_inside_cdata_trigger_nothing(mode: str, marker: str) -> None:
    text = block(invoke("Bash", ("command", _heredoc()), ("description", "d"), dsml=True),
                 dsml=True)
    real_close = text.rindex(marker) + len(marker)
    assert first_call_offset(text, [ToolSpec("Bash")], early_emit=mode) == real_close


def test_23_cdata_opening_straight_into_a_fence() -> None:
    fenced = "```xml\n" + block(invoke("Bash", ("command", "ls"), dsml=True), dsml=True) + "\n```\ntail"
    text = ('<tool_calls><invoke name="Write"><parameter name="content"><![CDATA['
            + fenced + "]]></parameter></invoke></tool_calls>")
    assert args_of(text)["content"] == fenced


def test_24_markup_in_cdata_stays_a_string() -> None:
    text = block(invoke("probe", ("description", "<b>urgent</b>")))
    assert args_of(text) == {"description": "<b>urgent</b>"}


def test_25_unclosed_cdata_is_repaired_at_the_end_of_the_stream() -> None:
    text = ('<tool_calls><invoke name="Write"><parameter name="content"><![CDATA[hello world'
            "</parameter></invoke></tool_calls>")
    assert args_of(text) == {"content": "hello world"}
    assert first_call_offset(text) is None


EDIT = ToolSpec("Edit", parameters={"type": "object", "properties": {
    "file_path": {"type": "string"}, "old_string": {"type": "string"},
    "new_string": {"type": "string"}}})


def test_cdata_holding_only_a_fence_opening_ends_at_its_own_close() -> None:
    # An edit of the first lines of a code block: each value opens a fence it
    # never closes, so every ]]> sat "in a fence" and the section ran to the
    # end of the block, its ]]> kept in the value (the edit then matched nothing).
    old, new = "```bash\nnpm install\n", "```bash\npnpm install\n"
    text = block(invoke("Edit", ("file_path", "README.md"), ("old_string", old),
                        ("new_string", new)), invoke("Bash", ("command", "ls")))
    result = outcomes(text, [EDIT, ToolSpec("Bash")])
    assert result.text == ""
    assert result.names == ["Edit", "Bash"]
    assert json.loads(result.args(0)) == {"file_path": "README.md", "old_string": old,
                                          "new_string": new}
    assert json.loads(result.args(1)) == {"command": "ls"}


def test_26_repeated_parameter_becomes_a_list() -> None:
    content = "#!/bin/sh\necho one\necho two\n"
    text = block(invoke("probe", ("path", "script.sh"), ("content", content))
                 .replace("</invoke>", '<parameter name="item">first</parameter>'
                                       '<parameter name="item">second</parameter></invoke>'))
    assert args_of(text) == {"path": "script.sh", "content": content, "item": ["first", "second"]}


def test_27_numbers_and_booleans_without_schema() -> None:
    text = block('<invoke name="probe"><parameter name="count">123</parameter>'
                 '<parameter name="max_tokens"><![CDATA[256]]></parameter>'
                 '<parameter name="enabled">true</parameter></invoke>')
    assert args_of(text) == {"count": 123, "max_tokens": 256, "enabled": True}


def test_28_nested_items_become_objects_and_lists() -> None:
    body = ("<item><question><![CDATA[Which one?]]></question><header>Pick</header>"
            "<options><item><label>A</label></item><item><label>B</label></item></options>"
            "<multiSelect>false</multiSelect></item>")
    text = block(f'<invoke name="probe"><parameter name="questions">{body}</parameter></invoke>')
    assert args_of(text) == {"questions": [{
        "question": "Which one?", "header": "Pick",
        "options": [{"label": "A"}, {"label": "B"}], "multiSelect": False,
    }]}


def test_29_br_separated_items_in_cdata() -> None:
    todos = ("<br><item><activeForm>Writing</activeForm><content>Write</content>"
             "<status>pending</status></item><br/><item><activeForm>Testing</activeForm>"
             "<content>Test</content><status>completed</status></item><br>")
    text = block(invoke("probe", ("todos", todos)))
    assert args_of(text) == {"todos": [
        {"activeForm": "Writing", "content": "Write", "status": "pending"},
        {"activeForm": "Testing", "content": "Test", "status": "completed"},
    ]}


def test_30_single_item_in_cdata_is_a_list() -> None:
    assert args_of(block(invoke("probe", ("todos", "<item>one</item>")))) == {"todos": ["one"]}


LOOSE = '{"content":"A","status":"completed"}, {"content":"B","status":"pending"}'


@pytest.mark.parametrize("cdata", [True, False])
def test_31_loose_object_list(cdata: bool) -> None:
    args = args_of(block(invoke("probe", ("todos", LOOSE), cdata=cdata)))
    assert args == {"todos": [{"content": "A", "status": "completed"},
                              {"content": "B", "status": "pending"}]}


@pytest.mark.parametrize("cdata", [True, False])
def test_31_loose_list_in_a_text_parameter_stays_text(cdata: bool) -> None:
    assert args_of(block(invoke("probe", ("content", LOOSE), cdata=cdata))) == {"content": LOOSE}


def test_32_structured_cdata_with_inner_cdata() -> None:
    value = ("<question><![CDATA[Pick one]]></question><options><item><label>A</label></item>"
             "<item><label>B</label></item></options>")
    text = block(f'<invoke name="probe"><parameter name="questions"><![CDATA[{value}]]>'
                 "</parameter></invoke>")
    # The inner "]]>" ends the outer section early; the rest is read as markup.
    assert args_of(text) == {"questions": {"question": "Pick one",
                                           "options": [{"label": "A"}, {"label": "B"}]}}


@pytest.mark.parametrize(("written", "expected"), [
    ("echo a &gt; out.txt", "echo a > out.txt"),
    ('echo "hello" > out.txt && cat out.txt', 'echo "hello" > out.txt && cat out.txt'),
])
def test_33_entities_decoded_once_and_shell_kept(written: str, expected: str) -> None:
    text = block(invoke("execute_command", ("command", written), cdata=False))
    assert args_of(text) == {"command": expected}


def test_34_parameter_named_tool_name_is_an_argument() -> None:
    text = block(invoke("execute_command", ("tool_name", "other"), ("command", "ls")))
    result = outcomes(text, UNTYPED)
    assert result.names == ["execute_command"]
    assert json.loads(result.args()) == {"tool_name": "other", "command": "ls"}


def test_35_json_looking_file_content_is_byte_identical() -> None:
    content = '{\n  "b": 1,\n  "a": 2\n}'
    text = block(invoke("Write", ("file_path", "x.json"), ("content", content)))
    assert args_of(text)["content"] == content


SCHEMA_36 = {"type": "object", "properties": {
    "content": {"type": "string"},
    "taskId": {"type": "string"},
    "payload": {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}}}},
    "either": {"type": ["string", "integer"]},
    "todos": {"type": "array", "items": {"type": "object"}},
}}


def test_36_schema_coercion_of_a_json_body() -> None:
    tools = [ToolSpec("Write", parameters=SCHEMA_36)]
    text = block('<invoke name="Write">{"input":{"content":{"message":"hi"},"taskId":1}}</invoke>')
    result = outcomes(text, tools)
    assert result.args() == '{"content":"{\\"message\\":\\"hi\\"}","taskId":"1"}'


def test_36_schema_coercion_nested_union_and_lists() -> None:
    tools = [ToolSpec("Write", parameters=SCHEMA_36)]
    body = {"payload": {"tags": [1, True, {"k": "v"}]}, "either": 5,
            "todos": [{"content": "a", "n": 1}]}
    text = block('<invoke name="Write">' + json.dumps({"input": body}) + "</invoke>")
    assert json.loads(outcomes(text, tools).args()) == {
        "payload": {"tags": ["1", "true", '{"k":"v"}']}, "either": 5,
        "todos": [{"content": "a", "n": 1}]}


def test_37_cdata_end_marker_round_trips_through_history_rendering() -> None:
    history = render_tool_calls([ToolCall("call_1", "probe", {"text": "a]]>b", "n": 2})])
    assert "]]]]><![CDATA[>" in history
    assert args_of(history) == {"text": "a]]>b", "n": 2}


@pytest.mark.parametrize(("body", "expected"), [
    ('{"input":{"path":"C:\\Users\\name"}}', {"path": "C:\\Users\\name"}),
    ('{"input":{"path":"C:\\new\\table"}}', {"path": "C:\\new\\table"}),
    ('{"input":{name: "x", count: 2}}', {"name": "x", "count": 2}),
    ('{"input":{"todos": {"a": 1}, {"b": {"c": 2}}}}', {"todos": [{"a": 1}, {"b": {"c": 2}}]}),
    ('{"parameters":{"q":"go"}}', {"q": "go"}),
    ('{"other":{"q":"go"}}', {}),
])
def test_json_body_repairs(body: str, expected: dict[str, object]) -> None:
    assert args_of(block(f'<invoke name="probe">{body}</invoke>')) == expected


def test_unparseable_json_body_is_kept_raw() -> None:
    assert args_of(block('<invoke name="probe">{not json at all</invoke>')) == {
        "_raw": "{not json at all"}


@pytest.mark.parametrize(("hint", "expected"), [("true", "42"), ("false", 42)])
def test_string_hint_attribute(hint: str, expected: object) -> None:
    text = block(f'<invoke name="probe"><parameter name="n" string="{hint}">42</parameter>'
                 "</invoke>")
    assert args_of(text) == {"n": expected}


def test_string_false_hint_still_meets_a_string_schema() -> None:
    tools = [ToolSpec("Write", parameters={"type": "object", "properties": {
        "content": {"type": "string"}}})]
    text = block('<invoke name="Write"><parameter name="content" string="false">'
                 '{"a": 1}</parameter></invoke>')
    assert args_of(text, tools) == {"content": '{"a":1}'}


@pytest.mark.parametrize("schema", [
    {"type": ["string", "null"]}, {"const": "x"}, {"enum": ["1", "2"]},
])
def test_string_like_schemas_keep_the_raw_text(schema: dict[str, object]) -> None:
    tools = [ToolSpec("probe", parameters={"type": "object", "properties": {"v": schema}})]
    assert args_of(block(invoke("probe", ("v", "1"))), tools) == {"v": "1"}


GENERATED = {"type": "object", "properties": {
    "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
    "label": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/Text"}]},
    "mode": {"$ref": "#/$defs/Mode"},
    "body": {"allOf": [{"$ref": "#/$defs/Text"}], "description": "file text"},
    "ids": {"type": "array", "items": {"$ref": "#/$defs/Text"}},
    "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
    "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
}, "$defs": {"Mode": {"enum": ["1", "2"], "type": "string"}, "Text": {"type": "string"}}}


def test_generated_schemas_type_their_strings() -> None:
    """Schemas made by pydantic or MCP servers say "string" through a nullable
    union, a $ref into $defs or an allOf: the value is still the raw text
    (a number-looking note came out as 123, JSON text as an object)."""
    tools = [ToolSpec("probe", parameters=GENERATED)]
    text = block(invoke("probe", ("note", "123"), ("label", "true"), ("mode", "1"),
                        ("body", '{"b": 1, "a": 2}'), ("ids", "<item>7</item><item>8</item>"),
                        ("tags", "<item>9</item>"), ("either", "5")))
    assert args_of(text, tools) == {"note": "123", "label": "true", "mode": "1",
                                    "body": '{"b": 1, "a": 2}', "ids": ["7", "8"],
                                    "tags": ["9"], "either": 5}


def test_self_referencing_schemas_are_followed_a_bounded_way() -> None:
    """A $ref cycle, or unions that fan out into one, cost a fixed amount of work."""
    loop = {"$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}] * 4}}, "type": "object",
            "properties": {"v": {"$ref": "#/$defs/A"}, "next": {"$ref": "#"}}}
    tools = [ToolSpec("probe", parameters=loop)]
    text = block('<invoke name="probe">{"input":{"v":[1],"next":{"v":2,"next":{"v":3}}}}</invoke>')
    assert args_of(text, tools) == {"v": [1], "next": {"v": 2, "next": {"v": 3}}}


def test_a_pointer_with_a_non_ascii_digit_index_names_nothing():
    """"²" passed str.isdigit() and broke int() on a client's tool schema."""
    from ds2proxy.toolcall.schema import _pointer
    assert _pointer({"anyOf": [{"type": "string"}]}, "#/anyOf/\u00b2") is None
    assert _pointer({"anyOf": [{"type": "string"}]}, "#/anyOf/0") == {"type": "string"}


def nested_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def big_args(text: str) -> dict[str, object]:
    """``args_of`` for a long text: whole, and streamed in a few cuts (not at every one)."""
    for chunks in ([text], cut(text, [7, len(text) // 3, len(text) // 2, len(text) - 3])):
        result = outcome_of(stream_events(chunks, UNTYPED))
        assert len(result.calls) == 1 and result.text == ""
    return json.loads(result.args())


@pytest.mark.parametrize("value", [nested_json(3000), "[" * 3000 + "]" * 3000,
                                   nested_json(101)])
@pytest.mark.parametrize("cdata", [True, False])
def test_a_value_nested_deeper_than_a_request_may_be_stays_text(value: str, cdata: bool) -> None:
    """A parameter nested thousands deep crashed the turn (RecursionError in the
    walkers after parsing); past the request-body bound it is text."""
    assert big_args(block(invoke("probe", ("x", value), cdata=cdata))) == {"x": value}


def test_a_value_as_deep_as_a_request_may_be_is_still_structure() -> None:
    value = json.loads(nested_json(99))
    assert args_of(block(invoke("probe", ("x", nested_json(99))))) == {"x": value}


def test_a_deep_json_body_is_kept_raw() -> None:
    body = '{"input":{"x":' + "[" * 3000 + "]" * 3000 + "}}"
    assert big_args(block(f'<invoke name="probe">{body}</invoke>')) == {"_raw": body}


@pytest.mark.parametrize("cdata", [True, False])
def test_deeply_nested_elements_stay_text(cdata: bool) -> None:
    value = "<a>" * 3000 + "1" + "</a>" * 3000
    assert big_args(block(invoke("probe", ("x", value), cdata=cdata))) == {"x": value}
    shallow = "<a>" * 5 + "1" + "</a>" * 5
    assert args_of(block(invoke("probe", ("x", shallow), cdata=cdata))) == {
        "x": {"a": {"a": {"a": {"a": {"a": 1}}}}}}


def test_the_object_run_repair_reads_a_deep_body_once() -> None:
    """The repair matched the brackets of every ``"k": {`` anew: a body of
    20 000 nested keys that fails to parse held the event loop for minutes."""
    value = '{"a": ' * 20000 + "oops" + "}" * 20000
    assert big_args(block(invoke("probe", ("x", value)))) == {"x": value}
    run = '{"todos": {"a": 1}, {"b": {"c": 2}}, "n": {"d": 3}}'
    assert args_of(block(invoke("probe", ("x", run)))) == {
        "x": {"todos": [{"a": 1}, {"b": {"c": 2}}], "n": {"d": 3}}}


def _strict(text: str) -> object:
    def refuse(name: str) -> object:
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def test_a_number_too_large_for_a_float_stays_text() -> None:
    # 1e400 parsed to inf and was written back as Infinity: the arguments
    # were no JSON, and every client's parse of them failed.
    text = block(invoke("probe", ("limit", "1e400"), ("count", "12345678901234567890123"),
                        ("opts", '{"max": -1e999}'), cdata=False))
    assert _strict(outcomes(text).args()) == {
        "limit": "1e400", "count": 12345678901234567890123, "opts": '{"max": -1e999}'}


def test_a_value_holding_its_own_cdata_section_round_trips() -> None:
    # An XML file with a CDATA section of its own: the escaped ]]> closing
    # that section was kept as the escape, so the file came back with
    # ']]]]><![CDATA[>' in it (a rewritten history call, or the model copying it).
    xml = '<script><![CDATA[if (a < b && c) { x = y[z[0]]; }]]></script>\n'
    history = render_tool_calls([ToolCall("call_1", "Write",
                                          {"file_path": "page.xml", "content": xml})])
    assert args_of(history) == {"file_path": "page.xml", "content": xml}


def test_a_nested_section_written_as_it_stands_is_kept() -> None:
    # The model copying an XML file whose CDATA holds the escape itself:
    # reading that escape as the nested section's close left a stray ]]>.
    xml = "<a><![CDATA[x]]]]><![CDATA[>y]]></a>"
    text = ('<tool_calls><invoke name="Write"><parameter name="file_path">a.xml</parameter>'
            f'<parameter name="content"><![CDATA[{xml}]]></parameter></invoke></tool_calls>')
    assert args_of(text) == {"file_path": "a.xml", "content": xml}
