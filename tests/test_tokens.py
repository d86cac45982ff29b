"""The token estimator (about 0.3 token per English and 0.6 per Chinese character)."""

from __future__ import annotations

import pytest

from ds2proxy.tokens import count_prompt_tokens, count_tokens

SAMPLES = ["", "a", "hello world", "你好，世界", "mixed 文本 and emoji 🎉", "\n\t ", "x" * 1000]


def test_empty_text_is_zero_and_any_other_text_positive():
    assert count_tokens("") == 0
    for text in SAMPLES[1:]:
        assert count_tokens(text) >= 1
    assert count_tokens(" ") == 1


def test_rates_follow_the_documented_ratios():
    assert count_tokens("e" * 1000) == 300
    assert count_tokens("中" * 1000) == 600
    assert count_tokens("e" * 10 + "中" * 10) == 9


def test_chinese_costs_more_than_the_same_number_of_ascii_characters():
    assert count_tokens("中文" * 50) > count_tokens("ab" * 50)


@pytest.mark.parametrize("text", SAMPLES)
def test_appending_never_lowers_the_count(text):
    total = count_tokens(text)
    for extra in ("b", "字", " more words", "🎉"):
        longer = count_tokens(text + extra)
        assert total <= longer <= total + count_tokens(extra)


def test_deterministic_for_equal_text():
    text = "".join(SAMPLES)
    rebuilt = "".join(list(text))
    assert rebuilt is not text
    assert count_tokens(text) == count_tokens(rebuilt)


def test_prompt_tokens_add_attachment_bytes_at_three_per_token():
    prompt = "<｜User｜>hi<｜Assistant｜>"
    assert count_prompt_tokens(prompt) == count_tokens(prompt)
    assert count_prompt_tokens(prompt, attachment_bytes=9) == count_tokens(prompt) + 3
    assert count_prompt_tokens(prompt, attachment_bytes=10) == count_tokens(prompt) + 4
    assert count_prompt_tokens("", attachment_bytes=-5) == 0
