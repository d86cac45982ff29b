"""Which target answers a name: routes (exact before glob), the pool's own
names, providers (listed before glob), then the pool's catalogue."""

from __future__ import annotations

import pytest

from ds2proxy.config import parse_config
from ds2proxy.errors import ModelNotFound
from ds2proxy.models import ModelCatalog
from ds2proxy.providers.routing import Router


def router(**doc) -> Router:
    cfg = parse_config({"providers": [
        {"name": "a", "base_url": "http://a", "models": ["gpt-4o", "deepseek-chat", "qwen-*"]},
        {"name": "b", "base_url": "http://b", "models": ["qwen-max", "*"]}], **doc})
    return Router(cfg, ModelCatalog(aliases=cfg.model_aliases))


def labels(r: Router, name: str) -> list[str] | None:
    targets = r.targets(name)
    return None if targets is None else [t.label for t in targets]


def test_precedence():
    r = router(model_routes={"qwen-*": ["b:qwen-plus"], "qwen-max": ["pool", "a:qwen-max"]},
               model_aliases={"team": "deepseek-reasoner"})
    assert labels(r, "qwen-max") == ["pool", "a:qwen-max"]  # exact route beats the glob
    assert labels(r, "qwen-turbo") == ["b:qwen-plus"]
    assert labels(r, "deepseek-chat") is None  # the pool's own name, though a lists it
    assert labels(r, "team") is None  # a configured alias is the pool's too
    assert labels(r, "GPT-4o") == ["a:gpt-4o"]  # a listed name beats the pool's stand-in
    assert labels(r, "models/grok-3") == ["b:grok-3"]  # b's glob, Gemini prefix dropped


def test_resolution_of_routed_names():
    r = router(model_routes={"mine": ["pool"], "claude-*": ["pool", "a:gpt-4o"]})
    with pytest.raises(ModelNotFound):
        r.resolve("mine", "openai")  # only the pool, which does not know the name
    assert r.resolve("claude-opus-4-1", "claude").native == "deepseek-reasoner"
    provider_only = r.resolve("grok-3", "openai")
    assert (provider_only.requested, provider_only.native) == ("grok-3", "grok-3")
    assert r.resolve("deepseek-chat", "openai") is None


def test_listing_skips_globs_and_the_pools_names():
    r = router(model_routes={"team-model": ["b:x"], "team-*": ["b:x"]})
    assert r.listed() == [("gpt-4o", "a"), ("qwen-max", "b"), ("team-model", "b")]


def test_without_providers_or_routes_nothing_is_routed():
    cfg = parse_config({})
    assert Router(cfg, ModelCatalog()).targets("anything") is None
