"""``providers`` and ``model_routes``: typed, checked, errors naming the JSON path."""

from __future__ import annotations

import pytest

from ds2proxy.config import ConfigError, parse_config
from ds2proxy.config_fields import unknown_field_messages

GOOD = {"name": "official", "base_url": "https://api.deepseek.com/v1/", "api_key": "sk-secret1234",
        "models": ["deepseek-chat", "qwen-*"], "headers": {"X-Team": "a"}}


def test_a_provider_gets_its_defaults_and_a_clean_url():
    cfg = parse_config({"providers": [GOOD]})
    (provider,) = cfg.providers
    assert provider.base_url == "https://api.deepseek.com/v1"
    assert (provider.kind, provider.timeout_seconds, provider.max_inflight) == ("openai", 120.0, 8)
    assert (provider.reasoning, provider.tools) == ("field", True)
    assert provider.embeddings_batch_size == 64
    assert provider.headers == (("X-Team", "a"),)
    assert provider.serves("QWEN-max") and provider.serves("deepseek-chat")
    assert not provider.serves("deepseek-reasoner")
    assert provider.listed_models() == ("deepseek-chat",)
    assert cfg.provider_named("official") is provider


def test_secrets_stay_out_of_the_repr():
    text = repr(parse_config({"providers": [GOOD]}).providers)
    assert "sk-secret1234" not in text and "X-Team" not in text


def test_routes_keep_their_order_and_targets():
    cfg = parse_config({"providers": [GOOD], "model_routes": {
        "deepseek-*": ["pool", "official:deepseek-chat"], "_note": "a comment"}})
    (route,) = cfg.model_routes
    assert route.matches("deepseek-reasoner") and not route.matches("qwen")
    assert [t.label for t in route.targets] == ["pool", "official:deepseek-chat"]
    assert route.targets[0].is_pool and not route.targets[1].is_pool


@pytest.mark.parametrize("doc, path", [
    ({"providers": {}}, "providers"),
    ({"providers": ["x"]}, "providers[0]"),
    ({"providers": [{**GOOD, "name": "Bad Name"}]}, "providers[0].name"),
    ({"providers": [{**GOOD, "name": ""}]}, "providers[0].name"),
    ({"providers": [GOOD, GOOD]}, "providers[1].name"),
    ({"providers": [GOOD, {**GOOD, "name": "b", "base_url": "ftp://x"}]},
     "providers[1].base_url"),
    ({"providers": [{**GOOD, "kind": "anthropic"}]}, "providers[0].kind"),
    ({"providers": [{**GOOD, "api_key": 5}]}, "providers[0].api_key"),
    ({"providers": [{**GOOD, "models": "qwen"}]}, "providers[0].models"),
    ({"providers": [{**GOOD, "models": ["ok", ""]}]}, "providers[0].models[1]"),
    ({"providers": [{**GOOD, "headers": {"X": 1}}]}, "providers[0].headers.X"),
    ({"providers": [{**GOOD, "headers": {"Bad Header": "v"}}]}, "providers[0].headers.Bad Header"),
    ({"providers": [{**GOOD, "timeout_seconds": 0}]}, "providers[0].timeout_seconds"),
    ({"providers": [{**GOOD, "max_inflight": True}]}, "providers[0].max_inflight"),
    ({"providers": [{**GOOD, "max_inflight": 0}]}, "providers[0].max_inflight"),
    ({"providers": [{**GOOD, "reasoning": "xml"}]}, "providers[0].reasoning"),
    ({"providers": [{**GOOD, "max_tokens_field": "max_output_tokens"}]},
     "providers[0].max_tokens_field"),
    ({"providers": [{**GOOD, "tools": "yes"}]}, "providers[0].tools"),
    ({"providers": [{**GOOD, "embeddings_batch_size": 0}]}, "providers[0].embeddings_batch_size"),
    ({"model_routes": []}, "model_routes"),
    ({"model_routes": {"m": []}}, "model_routes.m"),
    ({"model_routes": {"m": ["pool", 3]}}, "model_routes.m[1]"),
    ({"model_routes": {"m": ["nowhere:x"]}}, "model_routes.m[0]"),
    ({"providers": [GOOD], "model_routes": {"m": ["official:"]}}, "model_routes.m[0]"),
])
def test_errors_name_the_json_path(doc, path):
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert info.value.field == path
    assert "sk-secret1234" not in str(info.value)


def test_unknown_provider_fields_are_named_with_a_suggestion():
    messages = unknown_field_messages({"providers": [{**GOOD, "max_inflite": 2}],
                                       "model_routes": {"x": ["pool"]}})
    assert messages == ["unknown config field 'providers[0].max_inflite' (did you mean "
                        "'providers[0].max_inflight'?); it is kept but ignored"]
