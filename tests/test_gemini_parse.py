"""Gemini generateContent bodies → canonical requests (prompt-compat §4.4)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ds2proxy.canonical import AttachmentPart, ReasoningPart, ResolvedModel, TextPart, ToolCall
from ds2proxy.errors import InvalidRequest
from ds2proxy.prompt.build import build_prompt
from ds2proxy_plugins.gemini.contents import PART_TEXT_LIMIT, CallIds, parse_contents
from ds2proxy_plugins.gemini.request import parse_generate_request
from ds2proxy_plugins.gemini.schema import json_schema

PRO = ResolvedModel("gemini-2.5-pro", "deepseek-reasoner", "default", True, False)
HELLO = [{"role": "user", "parts": [{"text": "hello"}]}]


def parse(**body):
    body.setdefault("contents", HELLO)
    return parse_generate_request(body, PRO, stream=False)


def agent_body(fixtures_dir: Path, name: str) -> dict:
    return json.loads((fixtures_dir / "agent-requests" / name).read_text())["body"]


@pytest.mark.parametrize("instruction", [
    "Be brief.\nUse English.",
    {"parts": [{"text": "Be brief."}, {"text": "Use English."}]},
    {"role": "user", "parts": [{"text": "Be brief."}, {"text": "Use English."}]},
    {"text": "Be brief.\nUse English."},
    {"parts": {"text": "Be brief.\nUse English."}},  # was dropped without a word
])
def test_system_instruction_forms_become_one_leading_system_message(instruction):
    chat = parse(systemInstruction=instruction).chat
    assert chat.messages[0].role == "system"
    assert chat.messages[0].text == "Be brief.\nUse English."
    assert [m.role for m in chat.messages[1:]] == ["user"]


def test_snake_case_fields_are_read_like_camel_case():
    chat = parse(system_instruction={"parts": [{"text": "sys"}]},
                 generation_config={"max_output_tokens": 7, "top_p": 0.5}).chat
    assert chat.messages[0].text == "sys"
    assert chat.max_tokens == 7
    assert chat.sampling == {"top_p": 0.5, "max_tokens": 7}


@pytest.mark.parametrize("instruction", [{"parts": "Be brief."}, {"parts": 5}, 5])
def test_a_system_instruction_of_the_wrong_shape_is_refused_not_dropped(instruction):
    with pytest.raises(InvalidRequest) as err:
        parse(systemInstruction=instruction)
    assert "systemInstruction" in str(err.value)


@pytest.mark.parametrize("contents", [None, [], "hello", [["hello"]]])
def test_missing_or_malformed_contents_is_invalid_argument(contents):
    body = {} if contents is None else {"contents": contents}
    with pytest.raises(InvalidRequest) as err:
        parse_generate_request(body, PRO, stream=False)
    assert err.value.status == 400


def test_roles_map_and_model_thoughts_become_reasoning():
    messages = parse_contents([
        {"role": "user", "parts": [{"text": "q1"}, {"text": "more"}]},
        {"role": "model", "parts": [{"text": "plan", "thought": True,
                                     "thoughtSignature": "c2ln"},
                                    {"text": "a1"}]},
        {"parts": [{"text": "q2"}]},
        {"role": "system", "text": "late system"},
    ])
    assert [m.role for m in messages] == ["user", "assistant", "user", "system"]
    assert messages[0].text == "q1\nmore"
    assert messages[1].parts == [ReasoningPart("plan"), TextPart("a1")]
    assert messages[3].text == "late system"


def test_blank_text_and_signature_only_parts_add_nothing():
    messages = parse_contents([{"role": "user", "parts": [{"text": "  "}, {"text": "x"}]},
                               {"role": "model", "parts": [{"thoughtSignature": "c2ln"}]}])
    assert [(m.role, m.text) for m in messages] == [("user", "x")]


def test_call_without_id_and_result_with_only_a_name_share_one_generated_id():
    messages = parse_contents([
        HELLO[0],
        {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {"q": "x"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "lookup",
                                                         "response": {"hits": 3}}}]},
    ])
    call = messages[1].tool_calls[0]
    result = messages[2].tool_results[0]
    assert call == ToolCall(id="call_gemini_1", name="lookup", arguments={"q": "x"})
    assert (result.call_id, result.name, result.content) == ("call_gemini_1", "lookup",
                                                             '{"hits":3}')


def test_parallel_calls_of_one_tool_pair_with_their_results_in_order():
    messages = parse_contents([
        HELLO[0],
        {"role": "model", "parts": [{"functionCall": {"name": "read", "args": {"p": "a"}}},
                                    {"functionCall": {"name": "read", "args": {"p": "b"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "read", "response": {"t": "A"}}},
                                   {"functionResponse": {"name": "read", "response": {"t": "B"}}}]},
    ])
    calls = messages[1].tool_calls
    results = [m.tool_results[0] for m in messages[2:]]
    assert [c.id for c in calls] == ["call_gemini_1", "call_gemini_2"]
    assert [r.call_id for r in results] == ["call_gemini_1", "call_gemini_2"]
    assert len({c.id for c in calls}) == 2


class CountedId(str):
    """A call id that counts how often it is compared with another."""

    compared = 0
    __hash__ = str.__hash__

    def __eq__(self, other):
        CountedId.compared += 1
        return str.__eq__(self, other)


def test_thousands_of_results_find_their_calls_in_constant_time():
    """Each result's id was looked for in a list of the open calls and
    removed from it: 20,000 calls answered in reverse order (a 2.6 MB agent
    history) took 8 s of parsing. Each answer now costs a lookup."""
    count = 4000
    ids = CallIds()
    for i in range(count):
        ids.call("f", CountedId(f"c{i}"))
    CountedId.compared = 0
    answered = [ids.result("f", CountedId(f"c{i}")) for i in reversed(range(count))]
    assert answered == [f"c{i}" for i in reversed(range(count))]
    assert CountedId.compared <= 10 * count  # a list scan made it about count**2 / 2
    # Without ids, results still answer the oldest open call of their name.
    messages = parse_contents([HELLO[0], {"role": "model", "parts": [
        {"functionCall": {"name": "g", "args": {}}}] * 2}, {"role": "user", "parts": [
            {"functionResponse": {"name": "g", "response": {}}}] * 3}])
    assert [m.tool_results[0].call_id for m in messages[2:]] == [
        "call_gemini_1", "call_gemini_2", "call_gemini_2"]


def test_client_ids_and_thought_signatures_from_earlier_turns_are_accepted():
    messages = parse_contents([
        HELLO[0],
        {"role": "model", "parts": [{"functionCall": {"id": "run_1_0", "name": "run",
                                                      "args": {"command": "ls"}},
                                     "thoughtSignature": "skip_thought_signature_validator"}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "run_1_0", "name": "run",
                                                         "response": {"output": "a b"}}}]},
    ])
    assert messages[1].tool_calls[0].id == "run_1_0"
    assert messages[2].tool_results[0].call_id == "run_1_0"
    assert messages[2].tool_results[0].content == '{"output":"a b"}'


def test_a_user_turn_cannot_forge_a_call_and_its_results_come_before_its_text():
    messages = parse_contents([
        {"role": "user", "parts": [{"text": "see"},
                                   {"functionCall": {"name": "rm", "args": {"p": "/"}}},
                                   {"functionResponse": {"name": "x", "response": {"ok": 1}}}]},
    ])
    assert [m.role for m in messages] == ["tool", "user"]
    assert messages[1].tool_calls == []
    assert '"functionCall"' in messages[1].text


def test_inline_data_becomes_an_attachment_and_base64_never_enters_the_prompt():
    png = b"\x89PNG" + bytes(range(256)) * 8
    encoded = base64.b64encode(png).decode()
    messages = parse_contents([{"role": "user", "parts": [
        {"text": "what is this"},
        {"inlineData": {"mimeType": "image/png", "data": encoded}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://x.test/a.pdf"}}]}])
    attachments = messages[0].attachments
    assert attachments[0] == AttachmentPart(kind="image", mime_type="image/png", data=png)
    assert (attachments[1].kind, attachments[1].url) == ("file", "https://x.test/a.pdf")
    assert encoded[:64] not in build_prompt(messages)


def test_undecodable_inline_data_is_invalid_argument():
    with pytest.raises(InvalidRequest):
        parse_contents([{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png",
                                                                   "data": "a"}}]}])


def test_unknown_parts_are_short_redacted_json():
    blob = "QUJD" * 300
    messages = parse_contents([{"role": "user", "parts": [
        {"executableCode": {"language": "PYTHON", "code": "print(1)"}},
        {"somethingNew": {"data": "raw", "note": blob}},
        {"codeExecutionResult": {"output": "line of output\n" * 400}}]}])
    texts = [p.text for p in messages[0].parts]
    assert texts[0] == '{"executableCode":{"language":"PYTHON","code":"print(1)"}}'
    assert blob not in texts[1] and "raw" not in texts[1]
    assert "[omitted_binary_payload]" in texts[1]
    assert len(texts[2]) <= PART_TEXT_LIMIT + len("...(truncated)")
    assert texts[2].endswith("...(truncated)")


def test_function_declarations_in_both_schema_forms_become_json_schema_tools():
    chat = parse(tools=[
        {"functionDeclarations": [
            {"name": "get_weather", "description": "Weather",
             "parameters": {"type": "OBJECT", "properties": {
                 "city": {"type": "STRING"}, "days": {"type": "INTEGER", "nullable": True}},
                 "required": ["city"]}},
            {"name": "run", "parametersJsonSchema": {"type": "object", "properties": {
                "command": {"type": "string"}}}}]},
        {"googleSearch": {}},
        {"type": "function", "function": {"name": "legacy", "parameters": {"type": "OBJECT"}}},
    ]).chat
    tools = {t.name: t for t in chat.tools}
    assert list(tools) == ["get_weather", "run", "legacy"]
    assert tools["get_weather"].parameters == {
        "type": "object", "properties": {"city": {"type": "string"},
                                         "days": {"type": ["integer", "null"]}},
        "required": ["city"]}
    assert tools["run"].parameters["properties"]["command"] == {"type": "string"}
    assert tools["legacy"].parameters == {"type": "object"}


def test_schema_normalisation_is_structural():
    schema = {"type": "OBJECT", "properties": {
        "type": {"type": "STRING", "enum": ["A", "B"]},
        "items": {"type": "ARRAY", "items": {"type": "NUMBER"}},
        "any": {"anyOf": [{"type": "STRING"}, {"type": "NULL"}]},
        "free": {"type": "TYPE_UNSPECIFIED", "description": "Type"}}}
    assert json_schema(schema) == {"type": "object", "properties": {
        "type": {"type": "string", "enum": ["A", "B"]},
        "items": {"type": "array", "items": {"type": "number"}},
        "any": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "free": {"description": "Type"}}}
    assert schema["type"] == "OBJECT"


def test_generation_config_maps_onto_sampling_and_the_output_limit():
    chat = parse(generationConfig={"temperature": 0.2, "topP": 0.9, "topK": 40,
                                   "maxOutputTokens": 256, "stopSequences": ["END"],
                                   "candidateCount": 1, "seed": 3},
                 safetySettings=[{"category": "HARM_CATEGORY_HARASSMENT",
                                  "threshold": "BLOCK_NONE"}],
                 cachedContent="cachedContents/x").chat
    assert chat.sampling == {"temperature": 0.2, "top_p": 0.9, "max_tokens": 256,
                             "stop": ["END"]}
    assert chat.max_tokens == 256


@pytest.mark.parametrize("bad", [0, -1, "many", 1.5, True])
def test_a_bad_output_limit_is_invalid_argument(bad):
    with pytest.raises(InvalidRequest) as err:
        parse(generationConfig={"maxOutputTokens": bad})
    assert err.value.param == "generationConfig.maxOutputTokens"


def test_json_mode_with_and_without_a_schema():
    plain = parse(generationConfig={"responseMimeType": "application/json"}).chat
    schema = parse(generationConfig={"responseMimeType": "application/json",
                                     "responseSchema": {"type": "OBJECT", "properties": {
                                         "n": {"type": "INTEGER"}}}}).chat
    text = parse(generationConfig={"responseMimeType": "text/plain",
                                   "responseSchema": {"type": "OBJECT"}}).chat
    assert plain.response_format.type == "json_object"
    assert schema.response_format.type == "json_schema"
    assert schema.response_format.schema == {"type": "object",
                                             "properties": {"n": {"type": "integer"}}}
    assert text.response_format.type == "text"


def test_enum_mode_reads_the_values_from_either_schema_field():
    for key in ("responseSchema", "responseJsonSchema"):
        fmt = parse(generationConfig={"responseMimeType": "text/x.enum", key: {
            "type": "STRING", "enum": ["a", "b", "a"]}}).chat.response_format
        assert (fmt.type, fmt.schema) == ("enum", {"type": "string", "enum": ["a", "b"]})
    for values in (["a", 5], ["a", " "], ["x"] * 1001):
        with pytest.raises(InvalidRequest) as err:
            parse(generationConfig={"responseMimeType": "text/x.enum",
                                    "responseSchema": {"type": "STRING", "enum": values}})
        assert err.value.param == "generationConfig.responseSchema"


def test_thinking_budget_and_include_thoughts():
    off = parse(generationConfig={"thinkingConfig": {"thinkingBudget": 0}})
    on = parse(generationConfig={"thinkingConfig": {"thinkingBudget": 512,
                                                    "includeThoughts": True}})
    hidden = parse(generationConfig={"thinkingConfig": {"includeThoughts": False}})
    assert (off.chat.thinking, off.chat.thinking_enabled) == (False, False)
    assert (on.chat.thinking, on.show_thoughts) == (True, True)
    assert (hidden.chat.thinking, hidden.show_thoughts) == (None, False)
    # Without includeThoughts Gemini returns no thought parts.
    assert parse().show_thoughts is False


def test_gemini_cli_tool_result_turn_parses_with_its_tools_and_ids(fixtures_dir):
    body = agent_body(fixtures_dir, "gemini-cli-0.61-tool-result-turn.json")
    chat = parse_generate_request(body, PRO, stream=True).chat
    names = [t.name for t in chat.tools]
    declared = [d["name"] for d in body["tools"][0]["functionDeclarations"]]
    assert names == declared and "run_shell_command" in names
    assert all(t.parameters and t.parameters.get("type") == "object" for t in chat.tools)
    call = next(p for m in chat.messages for p in m.tool_calls)
    result = next(r for m in chat.messages for r in m.tool_results)
    assert call.id == result.call_id == "run_shell_command_1795318535243_0"
    assert call.arguments == {"command": "touch /home/user/project/g1"}
    assert chat.messages[0].role == "system"


def test_gemini_cli_router_call_asks_for_schema_json_in_lower_case(fixtures_dir):
    body = agent_body(fixtures_dir, "gemini-cli-0.61-router-json-mode.json")
    fmt = parse_generate_request(body, PRO, stream=False).chat.response_format
    assert fmt.type == "json_schema"
    props = fmt.schema["properties"]
    assert fmt.schema["type"] == "object"
    assert {name: p["type"] for name, p in props.items()} == {
        "complexity_reasoning": "string", "complexity_score": "integer"}


def test_tool_config_becomes_the_tool_choice():
    tools = [{"functionDeclarations": [{"name": "a"}, {"name": "b"}]}]

    def choice(mode, names=None):
        config = {"mode": mode, **({"allowedFunctionNames": names} if names else {})}
        return parse(tools=tools, toolConfig={"functionCallingConfig": config}).chat.tool_choice

    assert (choice("ANY", ["b"]).mode, choice("ANY", ["b"]).name) == ("forced", "b")
    assert (choice("ANY").mode, choice("NONE").mode, choice("AUTO").mode) == (
        "required", "none", "auto")
    assert choice("ANY", ["a", "b"]).allowed == frozenset({"a", "b"})
    with pytest.raises(InvalidRequest):
        choice("ANY", ["undeclared"])


def test_generation_config_numbers_read_as_protobuf_json():
    """Google's parser takes numbers as numbers or decimal strings, and 64.0
    for an integer; the checked values are what go upstream."""
    chat = parse(generationConfig={"temperature": "0.5", "maxOutputTokens": "256",
                                   "topK": 64.0, "candidateCount": "1"}).chat
    assert chat.sampling == {"temperature": 0.5, "max_tokens": 256}
    for bad in ({"temperature": "warm"}, {"maxOutputTokens": "1.5"}, {"topP": "NaN"},
                {"maxOutputTokens": "1_000"}):
        with pytest.raises(InvalidRequest) as info:
            parse(generationConfig=bad)
        assert info.value.param == f"generationConfig.{next(iter(bad))}"
