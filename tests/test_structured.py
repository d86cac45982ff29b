"""JSON mode: instructions, extraction from fenced/prosy replies, schema checks."""

from __future__ import annotations

import re

import pydantic
import pytest

from ds2proxy import structured
from ds2proxy.canonical import ResponseFormat
from ds2proxy.structured import (
    JSONOutputError,
    check,
    extract_json,
    format_instructions,
    normalise_schema,
    validate,
)

ROUTER_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "reasoning": {"type": "STRING"},
        "model_choice": {"type": "STRING", "enum": ["flash", "pro"]},
    },
    "required": ["reasoning", "model_choice"],
}


@pytest.mark.parametrize("reply", [
    '{"a": 1}',
    '```json\n{"a": 1}\n```',
    'Sure! Here it is:\n```\n{"a": 1}\n```\nHope that helps.',
    'The answer is {"a": 1} as requested.',
    '  {"a": 1}  \n',
])
def test_extract_json_from_every_wrapping(reply):
    assert extract_json(reply) == {"a": 1}


def test_extract_json_respects_brackets_inside_strings():
    assert extract_json('note: {"s": "a } b { c", "n": [1, {"x": "]"}]} end') == {
        "s": "a } b { c", "n": [1, {"x": "]"}]}


class CountedText(str):
    """A reply that counts the characters read from it one by one."""

    reads = 0

    def __getitem__(self, key):
        if isinstance(key, int):
            CountedText.reads += 1
        return str.__getitem__(self, key)


@pytest.mark.parametrize("reply", ["{" * 10_000, '{"a":' * 4_000, "[1, " * 5_000])
def test_unclosed_brackets_are_read_a_bounded_number_of_times(reply):
    """Each bracket was read on to its closing one: a reply of 10,000 "{"
    cost 50 million reads, 6 s on the event loop. The reads now stay linear."""
    CountedText.reads = 0
    with pytest.raises(JSONOutputError):
        extract_json(CountedText(reply))
    assert CountedText.reads <= 2 * len(reply) + 100_000


def test_extract_json_refuses_prose():
    with pytest.raises(JSONOutputError):
        extract_json("I cannot produce JSON today {not json")


def test_upper_case_openapi_types_are_normalised():
    schema = normalise_schema(ROUTER_SCHEMA)
    assert schema["type"] == "object"
    assert schema["properties"]["model_choice"]["type"] == "string"
    assert ROUTER_SCHEMA["type"] == "OBJECT"  # input not mutated


def test_router_schema_accepts_valid_and_names_problems():
    fmt = ResponseFormat(type="json_schema", schema=ROUTER_SCHEMA)
    check({"reasoning": "simple", "model_choice": "flash"}, fmt)
    with pytest.raises(JSONOutputError, match="model_choice is required"):
        check({"reasoning": "x"}, fmt)
    with pytest.raises(JSONOutputError, match="one of"):
        check({"reasoning": "x", "model_choice": "huge"}, fmt)


@pytest.mark.parametrize("value, schema, ok", [
    (3, {"type": "integer"}, True),
    (3.5, {"type": "integer"}, False),
    (True, {"type": "integer"}, False),
    (True, {"type": "boolean"}, True),
    (None, {"type": "string", "nullable": True}, True),
    (None, {"type": ["string", "null"]}, True),
    ([1, 2], {"type": "array", "items": {"type": "integer"}, "minItems": 3}, False),
    ({"a": 1, "b": 2}, {"type": "object", "properties": {"a": {}},
                        "additionalProperties": False}, False),
    ("x", {"anyOf": [{"type": "integer"}, {"type": "string"}]}, True),
    (5, {"type": "number", "maximum": 4}, False),
    ("abc", {"type": "string", "maxLength": 2}, False),
])
def test_validate_keywords(value, schema, ok):
    assert (validate(value, schema) == []) is ok


PYDANTIC_PLAN = {  # what Pydantic writes for a model holding a list of models
    "$defs": {"Step": {"type": "object", "properties": {"n": {"type": "integer"}},
                       "required": ["n"], "additionalProperties": False}},
    "type": "object",
    "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
                   "next": {"anyOf": [{"$ref": "#/$defs/Step"}, {"type": "null"}]}},
    "required": ["steps", "next"],
}


@pytest.mark.parametrize("value, problem", [
    ({"steps": [{"n": 1}], "next": None}, None),
    ({"steps": [{"n": "x"}], "next": None}, "$.steps[0].n should be integer"),
    ({"steps": [{}], "next": None}, "$.steps[0].n is required"),
    ({"steps": [], "next": {"n": 1, "m": 2}}, "matches none of the anyOf"),
])
def test_refs_into_defs_are_followed(value, problem):
    """Nested models are $refs: they used to constrain nothing, so an answer
    the client's own parse() refuses passed the check and was never re-asked."""
    problems = validate(value, PYDANTIC_PLAN)
    assert (problems == []) if problem is None else any(problem in p for p in problems)


@pytest.mark.parametrize("schema", [
    {"$ref": "#"},
    {"anyOf": [{"$ref": "#"}]},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"$ref": "https://example.com/schema.json"},
    {"$ref": "#/$defs/missing"},
    {"$ref": "#/items/0", "items": [1]},
])
def test_cyclic_remote_and_dangling_refs_end_the_walk(schema):
    assert validate({"a": 1}, schema) == []


def test_a_recursive_schema_checks_every_level():
    tree = {"$defs": {"Node": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
        "$ref": "#/$defs/Node"}
    assert validate({"v": 1, "kids": [{"v": 2, "kids": [{"v": 3}]}]}, tree) == []
    assert validate({"v": 1, "kids": [{"v": 2, "kids": [{"v": "3"}]}]}, tree) == [
        "$.kids[0].kids[0].v should be integer"]


def doubling_schema(levels: int, keyword: str = "anyOf") -> dict:
    """Each level names the next twice: 2**levels visits for a naive walk."""
    defs = {f"d{i}": {keyword: [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(levels)}
    defs[f"d{levels}"] = {"type": "integer"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


@pytest.mark.parametrize("keyword", ["anyOf", "allOf", "oneOf"])
def test_a_schema_that_doubles_at_every_level_stays_within_the_budget(monkeypatch, keyword):
    """A 2 KB client schema (Gemini responseJsonSchema, Ollama format) whose
    branches each name the next level twice took 2**40 visits, on the event
    loop, blocking every other request for good. The walk now stops after
    MAX_STEPS visits and leaves the rest unchecked."""
    visits = []
    real = structured._check_type
    monkeypatch.setattr(structured, "_check_type",
                        lambda *args: visits.append(1) or real(*args))
    validate("not an integer", doubling_schema(40, keyword))
    assert len(visits) <= structured.MAX_STEPS
    visits.clear()
    # A small one is still checked whole.
    assert validate("x", doubling_schema(3, keyword)) != []
    assert validate(7, doubling_schema(3, keyword)) == []


class Bounded(pydantic.BaseModel):
    """Constraints Pydantic validates in parse() and writes into the schema."""

    count: int = pydantic.Field(gt=0, multiple_of=5)
    pair: tuple[int, str]
    tags: set[str]
    extra: dict[str, int] = pydantic.Field(min_length=1)


@pytest.mark.parametrize("value, problem", [
    ({"count": 10, "pair": [1, "a"], "tags": ["x"], "extra": {"k": 1}}, None),
    ({"count": 0, "pair": [1, "a"], "tags": ["x"], "extra": {"k": 1}}, "$.count should be > 0"),
    ({"count": 7, "pair": [1, "a"], "tags": ["x"], "extra": {"k": 1}}, "multiple of 5"),
    ({"count": 5, "pair": ["a", 1], "tags": ["x"], "extra": {"k": 1}}, "$.pair[0] should be"),
    ({"count": 5, "pair": [1, "a", 2], "tags": ["x"], "extra": {"k": 1}}, "at most 2 items"),
    ({"count": 5, "pair": [1, "a"], "tags": ["x", "x"], "extra": {"k": 1}}, "unique items"),
    ({"count": 5, "pair": [1, "a"], "tags": ["x"], "extra": {}}, "at least 1 properties"),
])
def test_constraints_pydantic_checks_are_checked_first(value, problem):
    """Each of these passed the check and then failed the SDK's parse()."""
    problems = validate(value, Bounded.model_json_schema())
    assert (problems == []) if problem is None else any(problem in p for p in problems)
    if problem != "unique items":  # a set quietly drops duplicates in Pydantic
        assert pydantic_refuses(Bounded, value) is (problem is not None)


def pydantic_refuses(model: type[pydantic.BaseModel], value: object) -> bool:
    try:
        model.model_validate(value)
    except pydantic.ValidationError:
        return True
    return False


def test_json_object_requires_an_object():
    with pytest.raises(JSONOutputError):
        check([1, 2], ResponseFormat(type="json_object"))


def test_instructions_only_in_json_mode():
    assert format_instructions(ResponseFormat()) == ""
    text = format_instructions(ResponseFormat(type="json_schema", schema=ROUTER_SCHEMA))
    assert '"model_choice"' in text and '"object"' in text


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": 7, "required": "name"},
    {"type": {"x": 1}, "enum": "abc", "allOf": 3, "anyOf": {"a": 1}},
    {"type": ["object", 5], "additionalProperties": "no", "properties": {"a": 3}},
    {"type": "array", "items": [1], "minItems": "2", "maxItems": True},
    {"minimum": "1", "maximum": [], "minLength": None, "maxLength": {"x": 1}},
])
def test_a_malformed_client_schema_never_breaks_the_check(schema):
    """The schema is the client's, unchecked: keywords of the wrong type say
    nothing about the answer (found by the route fuzz as a TypeError)."""
    fmt = ResponseFormat(type="json_schema", schema=schema)
    for answer in ({"a": 1, "name": "x"}, [1, 2], "text", 5, None):
        try:
            check(answer, fmt)
        except JSONOutputError as exc:  # a mismatch is fine; a crash is not
            assert "should be" in str(exc)


@pytest.mark.parametrize("reply, value", [
    ("Brass", "Brass"), ("brass", "Brass"), ("'Brass'.", "Brass"), ("**Brass**", "Brass"),
    ("It is a Brass instrument.", "Brass"), ("it is brass", "Brass"), ("A", "A"), ("The answer: AB", "AB"),
])
def test_an_enum_reply_is_read_back_to_the_value_it_names(reply, value):
    from ds2proxy.enum_output import pick_value
    assert pick_value(reply, ["Brass", "String", "A", "AB"]) == value


def test_a_thousand_long_enum_values_are_looked_for_without_a_pattern_each(monkeypatch):
    """A regular expression was compiled for every value, twice: a thousand
    values of 1,000 characters (a 1 MB request) held the event loop 5 s
    reading one reply. The values are now found by substring search."""
    from ds2proxy import enum_output
    compiled = []
    real = re.compile
    monkeypatch.setattr(enum_output.re, "compile",
                        lambda *args: compiled.append(args) or real(*args))
    values = [f"{n:04d}" + "x" * 1000 for n in range(1000)]
    assert enum_output.pick_value(f"I pick {values[7].upper()}, surely.", values) == values[7]
    with pytest.raises(enum_output.EnumOutputError):
        enum_output.pick_value("a" * 1999, ["a" * n for n in range(1, 1001)])
    assert compiled == []
    assert enum_output.pick_value("x-A-y", ["A", "AB"]) == "A"
    assert enum_output.pick_value("_A_ or AB", ["A", "AB"]) == "AB"


@pytest.mark.parametrize("reply", ["Neither", "Brass or String", "", "x" * 3000 + " Brass"])
def test_an_enum_reply_naming_none_or_several_values_is_refused(reply):
    from ds2proxy.enum_output import EnumOutputError, pick_value
    with pytest.raises(EnumOutputError):
        pick_value(reply, ["Brass", "String"])
