"""Model resolution: "wide in, strict out" (prompt-compat §8, deepseek-web §6.1)."""

from __future__ import annotations

import logging

import pytest

from ds2proxy.canonical import ChatRequest
from ds2proxy.errors import InvalidRequest, ModelNotFound
from ds2proxy.models import ModelCatalog, NativeModel


@pytest.fixture
def catalog() -> ModelCatalog:
    return ModelCatalog()


def native_of(catalog: ModelCatalog, name: str, **kwargs) -> str:
    return catalog.resolve(name, **kwargs).native


def test_natives_list_legacy_expert_vision_and_v4(catalog):
    ids = [model.id for model in catalog.natives()]
    assert ids[:4] == ["deepseek-chat", "deepseek-reasoner", "deepseek-chat-search",
                       "deepseek-reasoner-search"]
    for tier in ("expert", "vision"):
        assert {f"deepseek-{tier}-chat", f"deepseek-{tier}-reasoner-search"} <= set(ids)
    assert {"deepseek-v4-flash", "deepseek-v4-pro-search", "deepseek-v4-vision"} <= set(ids)
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("model_id", "model_type", "thinking", "search"), [
    ("deepseek-chat", "default", False, False),
    ("deepseek-reasoner-search", "default", True, True),
    ("deepseek-expert-reasoner", "expert", True, False),
    ("deepseek-vision-chat-search", "vision", False, True),
    ("deepseek-v4-flash", "default", True, False),
    ("deepseek-v4-pro-search", "expert", True, True),
    ("deepseek-v4-vision", "vision", True, False),
])
def test_native_flags(catalog, model_id, model_type, thinking, search):
    assert catalog.native(model_id) == NativeModel(model_id, model_type, thinking, search)
    resolved = catalog.resolve(model_id)
    assert (resolved.native, resolved.model_type, resolved.thinking, resolved.search) == (
        model_id, model_type, thinking, search)


def test_native_name_is_case_insensitive_and_trimmed_but_echoed_exactly(catalog):
    resolved = catalog.resolve("  DeepSeek-Reasoner ")
    assert resolved.native == "deepseek-reasoner"
    assert resolved.requested == "  DeepSeek-Reasoner "


def test_alias_resolves_and_echoes_the_requested_name(catalog):  # idea 22
    resolved = catalog.resolve("GPT-4O")
    assert resolved.native == "deepseek-chat"
    assert resolved.requested == "GPT-4O"


@pytest.mark.parametrize(("name", "native"), [
    ("claude-opus-5-5", "deepseek-reasoner"),
    ("claude-sonnet-5-5", "deepseek-chat"),
    ("claude-haiku-5-5", "deepseek-chat"),
    ("gemini-3.1-pro-preview", "deepseek-reasoner"),
    ("gemini-3.8-flash", "deepseek-chat"),
    ("gemini-3.5-flash-lite", "deepseek-chat"),
    ("gpt-5-codex", "deepseek-reasoner"),
    ("gpt-5.1-codex", "deepseek-reasoner"),
    ("o3-deep-research", "deepseek-reasoner-search"),
    ("gemini-pro-vision", "deepseek-vision-chat"),
    ("mistral-large-latest", "deepseek-chat"),
])
def test_agent_default_names_resolve_without_family_fallback(name, native):
    catalog = ModelCatalog(family_fallback=False)
    assert native_of(catalog, name) == native


def test_builtin_list_is_large_and_targets_natives(catalog):
    aliases = catalog.aliases()
    natives = {model.id for model in catalog.natives()}
    assert len(aliases) >= 100
    assert set(aliases.values()) <= natives
    assert not any(name.startswith("deepseek-") for name in aliases)


def test_configured_alias_wins_and_is_listed():
    catalog = ModelCatalog(
        aliases={"GPT-4o": "deepseek-reasoner-search", "my-bot": "deepseek-chat"})
    assert native_of(catalog, "gpt-4o") == "deepseek-reasoner-search"
    assert native_of(catalog, "MY-BOT") == "deepseek-chat"
    assert catalog.aliases()["gpt-4o"] == "deepseek-reasoner-search"
    assert catalog.aliases()["my-bot"] == "deepseek-chat"


def test_alias_to_a_non_native_is_ignored():
    catalog = ModelCatalog(aliases={"gpt-4o": "gpt-4.1", "mine": "nothing"})
    assert native_of(catalog, "gpt-4o") == "deepseek-chat"
    assert "mine" not in catalog.aliases()
    with pytest.raises(ModelNotFound):
        catalog.resolve("mine")


def test_configured_alias_may_revive_a_retired_name():
    catalog = ModelCatalog(aliases={"gpt-3.5-turbo": "deepseek-chat"})
    assert native_of(catalog, "gpt-3.5-turbo") == "deepseek-chat"


@pytest.mark.parametrize(("name", "mapping_key"), [
    ("claude-sonnet-4-5", "fast"),
    ("claude-haiku-5-5", "fast"),
    ("claude-opus-4-6", "slow"),
    ("claude-3-7-sonnet-latest", "fast"),
    ("claude-next-slow", "slow"),
    ("claude-sonnet-reasoner", "slow"),
])
def test_claude_mapping_picks_fast_or_slow_on_claude_routes(name, mapping_key):
    mapping = {"fast": "deepseek-v4-flash", "slow": "deepseek-v4-pro"}
    catalog = ModelCatalog(claude_mapping=mapping)
    assert native_of(catalog, name, family="claude") == mapping[mapping_key]


def test_claude_mapping_defaults_and_scope(catalog):
    catalog.configure(claude_mapping={"fast": "deepseek-expert-chat"})
    assert native_of(catalog, "claude-sonnet-4-5", family="claude") == "deepseek-expert-chat"
    assert native_of(catalog, "claude-opus-4-6", family="claude") == "deepseek-reasoner"
    assert native_of(catalog, "claude-sonnet-4-5") == "deepseek-chat"
    assert native_of(catalog, "gpt-4o", family="claude") == "deepseek-chat"


def test_model_alias_beats_claude_mapping():
    catalog = ModelCatalog(aliases={"claude-opus-4-6": "deepseek-chat-search"},
                           claude_mapping={"slow": "deepseek-v4-pro"})
    assert native_of(catalog, "claude-opus-4-6", family="claude") == "deepseek-chat-search"


def test_claude_mapping_does_not_widen_a_strict_catalog():
    catalog = ModelCatalog(family_fallback=False)
    assert native_of(catalog, "claude-opus-5-5", family="claude") == "deepseek-reasoner"
    with pytest.raises(ModelNotFound):
        catalog.resolve("claude-unheard-of", family="claude")


def test_invalid_claude_mapping_entry_keeps_the_default():
    catalog = ModelCatalog(claude_mapping={"fast": "gpt-4o"})
    assert native_of(catalog, "claude-sonnet-4-5", family="claude") == "deepseek-chat"


@pytest.mark.parametrize(("name", "native"), [
    ("o3-super", "deepseek-reasoner"),  # idea 25
    ("o1-turbo", "deepseek-reasoner"),
    ("gpt-9", "deepseek-chat"),
    ("gpt-9-search", "deepseek-chat-search"),
    ("claude-opus-9", "deepseek-reasoner"),
    ("gemini-9-reasoning-search", "deepseek-reasoner-search"),
    ("llama-r1-distill", "deepseek-reasoner"),
    ("mistral-slow", "deepseek-reasoner"),
    ("mistral-vision-max", "deepseek-vision-chat"),
    ("command-a-vision-reason", "deepseek-vision-reasoner"),
])
def test_family_fallback_by_keywords(catalog, name, native):
    assert native_of(catalog, name) == native


def test_family_fallback_off_refuses_unlisted_names():  # idea 25
    catalog = ModelCatalog(family_fallback=False)
    with pytest.raises(ModelNotFound):
        catalog.resolve("o3-super")


@pytest.mark.parametrize("name", [
    "gpt-3.5-turbo", "GPT-3.5-turbo-16k", "claude-2.1", "claude-2", "claude-1.3",
    "claude-instant-1.2", "deepseek-chat-pro", "deepseek-v9-imaginary", "totally-custom", "",
    "   ", "qwen-max", "qwen3-235b-a22b", "doubao-seed-1-6-250615", "grok-4-0709",
    "grok-3-mini",
    "-nothinking",
])
def test_retired_wrong_native_and_unknown_names_are_refused(catalog, name):  # idea 24
    with pytest.raises(ModelNotFound) as caught:
        catalog.resolve(name)
    error = caught.value
    assert isinstance(error, InvalidRequest)
    assert (error.status, error.code, error.param) == (400, "model_not_found", "model")
    assert f'"{name}"' in error.message


@pytest.mark.parametrize(("name", "native"), [
    ("o3-nothinking", "deepseek-reasoner"),  # idea 23
    ("gpt-4o-nothinking", "deepseek-chat"),
    ("deepseek-v4-pro-NoThinking", "deepseek-v4-pro"),
    ("o3-super-nothinking", "deepseek-reasoner"),
])
def test_nothinking_suffix_forces_thinking_off(catalog, name, native):
    resolved = catalog.resolve(name)
    assert resolved.native == native
    assert resolved.force_no_thinking is True
    assert resolved.thinking is False
    assert resolved.requested == name
    request = ChatRequest(model=resolved, messages=[], thinking=True)
    assert request.thinking_enabled is False


def test_plain_name_does_not_force_thinking_off(catalog):
    resolved = catalog.resolve("o3")
    assert (resolved.thinking, resolved.force_no_thinking) == (True, False)


def test_gemini_route_accepts_a_models_prefix(catalog):
    """Google's ``models/`` resource prefix is the Gemini plugin's to strip:
    the catalogue itself knows no dialect's name forms."""
    from ds2proxy_plugins.gemini.models import served_model

    class Resolver:
        def resolve_model(self, name, *, family=None):
            return catalog.resolve(name, family=family)

    assert served_model(Resolver(), "models/gemini-2.5-pro").native == "deepseek-reasoner"
    with pytest.raises(ModelNotFound):
        catalog.resolve("models/gemini-2.5-pro", family="gemini")


def test_configure_applies_at_once_and_keeps_what_is_not_given():
    catalog = ModelCatalog(aliases={"bot": "deepseek-chat"})
    catalog.configure(family_fallback=False)
    assert native_of(catalog, "bot") == "deepseek-chat"
    with pytest.raises(ModelNotFound):
        catalog.resolve("gpt-9")
    catalog.configure(aliases={"bot": "deepseek-reasoner"}, family_fallback=True)
    assert native_of(catalog, "bot") == "deepseek-reasoner"
    assert native_of(catalog, "gpt-9") == "deepseek-chat"
    catalog.configure(aliases={})
    assert "bot" not in catalog.aliases()


def test_pick_is_logged_once_per_distinct_name(catalog, caplog):
    caplog.set_level(logging.INFO, logger="ds2proxy.models")
    for name in ("gpt-4o", "gpt-4o", "GPT-4o", "o3-nothinking"):
        catalog.resolve(name)
    messages = [r.getMessage() for r in caplog.records if r.name == "ds2proxy.models"]
    assert len(messages) == 3
    assert "deepseek-chat" in messages[0] and "'gpt-4o'" in messages[0]
    assert "thinking forced off" in messages[2]


def test_pick_log_survives_reconfiguration_and_tells_changed_picks(catalog, caplog):
    caplog.set_level(logging.INFO, logger="ds2proxy.models")

    def picks() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "ds2proxy.models"]

    catalog.configure(aliases={"house": "deepseek-chat"})
    catalog.resolve("house")
    # A config write that changes nothing (a token refresh) logs nothing again.
    catalog.configure(aliases={"house": "deepseek-chat"})
    catalog.resolve("house")
    assert picks() == ["model 'house' resolved to deepseek-chat"]
    # A new pick for the same name is worth saying.
    catalog.configure(aliases={"house": "deepseek-reasoner"})
    catalog.resolve("house")
    assert picks()[-1] == "model 'house' resolved to deepseek-reasoner"
    # The same name picked differently on a Claude route is said too.
    chat, claude = (catalog.resolve("claude-opus-5-5", family=f).native
                    for f in (None, "claude"))
    opus = [m for m in picks() if "'claude-opus-5-5'" in m]
    assert len(opus) == len({chat, claude})


def test_refused_names_are_not_logged_as_picks(catalog, caplog):
    caplog.set_level(logging.INFO, logger="ds2proxy.models")
    with pytest.raises(ModelNotFound):
        catalog.resolve("nope")
    assert not [r for r in caplog.records if r.name == "ds2proxy.models"]


@pytest.mark.parametrize(("name", "native", "thinking"), [
    ("deepseek-v3", "deepseek-chat", False),
    ("deepseek-v3-1-250821", "deepseek-chat", False),
    ("deepseek-v3.2-exp", "deepseek-chat", False),
    ("deepseek-r1", "deepseek-reasoner", True),
    ("DeepSeek-R1-0528", "deepseek-reasoner", True),
    ("deepseek-r1-distill-qwen-32b", "deepseek-reasoner", True),
])
def test_deepseek_release_names_resolve_to_their_model(name, native, thinking):
    catalog = ModelCatalog(family_fallback=False)
    resolved = catalog.resolve(name)
    assert (resolved.native, resolved.thinking, resolved.requested) == (native, thinking, name)
