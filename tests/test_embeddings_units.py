"""Embedding inputs and the deterministic provider, without a server."""

from __future__ import annotations

import math

import pytest
from token_util import reference_tokens

from ds2proxy.errors import InvalidRequest
from ds2proxy.tokens import count_tokens_async
from plugins.openai.embeddings import parse_inputs, usage_tokens
from ds2proxy.embeddings import DeterministicEmbeddings, provider_for


async def test_same_text_same_unit_vector_of_the_asked_dimension() -> None:
    provider = DeterministicEmbeddings(64)
    a, b, c = await provider.embed(["hello", "hello", "hellO"])
    assert a == b and a != c
    assert len(a) == 64
    assert math.isclose(math.fsum(v * v for v in a), 1.0, rel_tol=1e-12)


def test_provider_choice_follows_the_setting() -> None:
    assert isinstance(provider_for("deterministic", 8), DeterministicEmbeddings)
    assert provider_for("", 8) is None and provider_for("none", 8) is None


@pytest.mark.parametrize("value, texts", [
    ("abc", ["abc"]),
    (["a", "b"], ["a", "b"]),
    ([1, 2, 3], ["1 2 3"]),
    ([[1, 2], [3]], ["1 2", "3"]),
])
def test_every_input_form(value: object, texts: list[str]) -> None:
    assert [i.text for i in parse_inputs(value)] == texts


async def test_token_counts() -> None:
    assert await usage_tokens(parse_inputs([[5, 6, 7], [8]]), count_tokens_async) == 4
    assert await usage_tokens(parse_inputs(["hello world", "你好"]), count_tokens_async) == (
        reference_tokens("hello world") + reference_tokens("你好"))


@pytest.mark.parametrize("value", [None, "", [], [""], [[]], [None], {"text": "a"}, [True],
                                   [[1, -2]]])
def test_bad_inputs_are_400s(value: object) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_inputs(value)
    assert err.value.param == "input"
