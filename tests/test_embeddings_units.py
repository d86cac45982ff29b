"""Embedding inputs, the testing engine and the embeddings setting, without a server."""

from __future__ import annotations

import math

import pytest
from token_util import reference_tokens

from ds2proxy.config import parse_config
from ds2proxy.config_values import ConfigError
from ds2proxy.embeddings import DeterministicEmbeddings, provider_for
from ds2proxy.errors import InvalidRequest
from ds2proxy.tokens import count_tokens_async
from ds2proxy.providers.embeddings_client import batches
from plugins.openai.embeddings import parse_inputs, usage_tokens


async def test_same_text_same_unit_vector_of_the_asked_dimension() -> None:
    provider = DeterministicEmbeddings(64)
    a, b, c = await provider.embed(["hello", "hello", "hellO"])
    assert a == b and a != c
    assert len(a) == 64
    assert math.isclose(math.fsum(v * v for v in a), 1.0, rel_tol=1e-12)


def test_provider_choice_follows_the_setting() -> None:
    assert isinstance(provider_for("testing", 8), DeterministicEmbeddings)
    assert provider_for("testing", None).dimensions == 1536
    assert provider_for("", 8) is None and provider_for("none", 8) is None
    assert provider_for("deterministic", 8) is None


def test_the_old_name_is_refused_naming_the_new_one() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"embeddings": {"provider": "deterministic"}})
    assert err.value.field == "embeddings.provider" and "'testing'" in str(err.value)


def test_the_provider_must_be_configured() -> None:
    local = {"name": "local", "base_url": "http://127.0.0.1:11434/v1", "models": ["*"]}
    with pytest.raises(ConfigError) as err:
        parse_config({"embeddings": {"provider": "locl"}, "providers": [local]})
    assert err.value.field == "embeddings.provider" and "'local'" in str(err.value)
    cfg = parse_config({"embeddings": {"provider": "local", "model": "nomic-embed-text"},
                        "providers": [local]})
    assert (cfg.embeddings.provider, cfg.embeddings.model) == ("local", "nomic-embed-text")
    assert parse_config({"embeddings": {"provider": "none"}}).embeddings.provider == ""


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


def test_batches_keep_order_and_size() -> None:
    texts = [str(i) for i in range(150)]
    parts = batches(texts, 64)
    assert [len(p) for p in parts] == [64, 64, 22]
    assert [t for p in parts for t in p] == texts
