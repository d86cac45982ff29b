"""The client's thinking switch (prompt-compat §7)."""

from __future__ import annotations

import pytest

from ds2proxy.dialects.thinking import thinking_override


@pytest.mark.parametrize(("body", "expected"), [
    ({}, None),
    ({"thinking": True}, True),
    ({"thinking": False}, False),
    ({"thinking": "enabled"}, True),
    ({"thinking": " ON "}, True),
    ({"thinking": "enable"}, True),
    ({"thinking": "true"}, True),
    ({"thinking": "disabled"}, False),
    ({"thinking": "disable"}, False),
    ({"thinking": "off"}, False),
    ({"thinking": "none"}, False),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, True),
    ({"thinking": {"type": "disabled"}}, False),
    ({"thinking": {"type": "auto"}}, None),
    ({"thinking": {"type": "adaptive", "display": "omitted"}}, None),
    ({"reasoning": True}, True),
    ({"reasoning": "high"}, True),
    ({"reasoning": "none"}, False),
    ({"reasoning": {"effort": "low", "summary": "auto"}}, True),
    ({"reasoning": {"effort": "none"}}, False),
    ({"reasoning": {"type": "disabled"}}, False),
    ({"reasoning": {"enabled": False}}, False),
    ({"reasoning": {"summary": "auto"}}, None),
    ({"extra_body": {"thinking": {"type": "enabled"}}}, True),
    ({"extra_body": {"reasoning": {"effort": "medium"}}}, True),
    ({"extra_body": {"reasoning_effort": "off"}}, False),
    ({"reasoning_effort": "minimal"}, True),
    ({"reasoning_effort": "xhigh"}, True),
    ({"reasoning_effort": "disabled"}, False),
    ({"reasoning_effort": "false"}, False),
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": 1024}}}, True),
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}, False),
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": -1}}}, None),
    ({"generation_config": {"thinking_config": {"thinking_budget": 0}}}, False),
    ({"generationConfig": {"thinkingConfig": {"includeThoughts": True}}}, None),
])
def test_each_key_form(body, expected):
    assert thinking_override(body) is expected


@pytest.mark.parametrize(("body", "expected"), [
    ({"thinking": False, "reasoning": True, "reasoning_effort": "high"}, False),
    ({"reasoning": "none", "extra_body": {"thinking": True}}, False),
    ({"extra_body": {"thinking": "off", "reasoning_effort": "high"},
      "reasoning_effort": "high"}, False),
    ({"extra_body": {"reasoning": True}, "reasoning_effort": "none"}, True),
    ({"reasoning_effort": "none",
      "generationConfig": {"thinkingConfig": {"thinkingBudget": 512}}}, False),
])
def test_first_decisive_key_wins(body, expected):
    assert thinking_override(body) is expected


def test_auto_ends_the_search_with_the_model_default():
    assert thinking_override({"thinking": {"type": "auto"}, "reasoning_effort": "high"}) is None


@pytest.mark.parametrize("noise", [
    {"thinking": "maybe"}, {"thinking": 1}, {"thinking": {"budget_tokens": 10}},
    {"reasoning": ["high"]}, {"extra_body": "not a dict"},
])
def test_unreadable_values_fall_through_to_later_keys(noise):
    assert thinking_override(noise) is None
    assert thinking_override({**noise, "reasoning_effort": "low"}) is True
