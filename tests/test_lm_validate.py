"""The LM v2 body rules, one by one: every documented range at and just past
its bounds, the types, and the message alternation rule."""

from __future__ import annotations

import pytest

from ds2proxy.errors import InvalidRequest
from ds2proxy_plugins.lm.validate import validate_body, validate_messages

U = {"role": "user", "content": "u"}
A = {"role": "assistant", "content": "a"}
S = {"role": "system", "content": "s"}
F = {"role": "function", "content": "f"}


def body(**extra) -> dict:
    return {"model": "deepseek-chat", "messages": [U], **extra}


def refused(doc: dict) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        validate_body(doc)
    assert info.value.status == 400
    return info.value


@pytest.mark.parametrize("field, good", [
    ("temperature", [1e-9, 0.5, 1, 1.0]),
    ("top_p", [0, 0.0, 0.8, 1]),
    ("penalty_score", [1, 1.5, 2.0]),
    ("frequency_penalty", [-2, 0, 2.0]),
    ("presence_penalty", [-2.0, 0.3, 2]),
    ("top_k", [0, 1, 40]),
    ("max_completion_tokens", [1, 4096]),
])
def test_values_inside_the_documented_range_pass(field, good):
    for value in [*good, None]:
        validate_body(body(**{field: value}))


@pytest.mark.parametrize("field, bad", [
    ("temperature", [0, 0.0, -0.1, 1.0001, 2]),
    ("top_p", [-0.01, 1.01]),
    ("penalty_score", [0.99, 2.01, 0]),
    ("frequency_penalty", [-2.01, 2.01]),
    ("presence_penalty", [-3, 3]),
    ("top_k", [-1, 1.5]),
    ("max_completion_tokens", [0, -5, 2.5]),
])
def test_values_outside_the_documented_range_name_the_field(field, bad):
    for value in bad:
        err = refused(body(**{field: value}))
        assert err.param == field and field in err.message


@pytest.mark.parametrize("field", ["temperature", "top_p", "penalty_score", "top_k",
                                   "max_completion_tokens", "presence_penalty"])
def test_non_numbers_are_refused(field):
    for value in ["0.5", True, [1]]:
        assert refused(body(**{field: value})).param == field


@pytest.mark.parametrize("doc, param", [
    ({"model": "", "messages": [U]}, "model"),
    ({"model": 7, "messages": [U]}, "model"),
    ({"model": "m"}, "messages"),
    (body(stream="yes"), "stream"),
    (body(stream_options=[]), "stream_options"),
    (body(stream_options={"include_usage": "true"}), "stream_options.include_usage"),
])
def test_types_and_required_fields(doc, param):
    assert refused(doc).param == param


@pytest.mark.parametrize("messages", [
    [U], [U, A, U], [S, U], [S, S, U, A, U], [F], [U, A, F], [S, U, A, {**U, "role": "tool"}],
])
def test_alternating_odd_conversations_pass(messages):
    validate_messages(messages)


@pytest.mark.parametrize("messages, hint", [
    ([], "non-empty"),
    ("hello", "non-empty"),
    ([A], "messages[0].role must be user"),
    ([U, U], "messages[1].role must be assistant"),
    ([U, A], "odd number"),
    ([S, U, A, A], "messages[3].role must be user"),
    ([S], "odd number"),
    ([U, S, U], "messages[1].role must be assistant"),
    (["text"], "messages[0] must be an object"),
])
def test_broken_alternation_is_refused_with_a_clear_message(messages, hint):
    err = refused({"model": "m", "messages": messages})
    assert err.param == "messages" and hint in err.message


@pytest.mark.parametrize("role", [[], {"a": 1}, [[["user"]]], 3])
def test_a_role_that_is_not_a_string_is_a_400_naming_it(role):
    """Regression: ``"role": []`` was hashed into a set and crashed (500)."""
    err = refused({"model": "m", "messages": [{"role": role, "content": "x"}]})
    assert err.param == "messages[0].role" and "must be a string" in err.message
