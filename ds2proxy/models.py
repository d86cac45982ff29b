"""Client model names → native upstream models: "wide in, strict out".

Clients send whatever their vendor calls a model (``gpt-4o``,
``claude-opus-5-5``, ``gemini-3.8-flash`` …); the upstream only ever gets a
native model, and a name that maps to none is refused so a typo is visible
instead of silently answered by some other model.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

from ds2proxy.canonical import ResolvedModel
from ds2proxy.errors import ModelNotFound

logger = logging.getLogger("ds2proxy.models")

ModelType = Literal["default", "expert", "vision"]
NO_THINKING_SUFFIX = "-nothinking"


@dataclass(frozen=True)
class NativeModel:
    """A model the upstream serves: its tier and default switches."""

    id: str
    model_type: ModelType
    thinking: bool
    search: bool


def _legacy_family(tier: str, model_type: ModelType) -> list[NativeModel]:
    """chat / reasoner × plain / search for one tier (reasoner = thinking on)."""
    return [
        NativeModel(
            f"deepseek-{tier}{'reasoner' if thinking else 'chat'}{'-search' if search else ''}",
            model_type, thinking, search,
        )
        for thinking, search in ((False, False), (True, False), (False, True), (True, True))
    ]


NATIVE_MODELS: tuple[NativeModel, ...] = (
    *_legacy_family("", "default"),
    *_legacy_family("expert-", "expert"),
    *_legacy_family("vision-", "vision"),
    NativeModel("deepseek-v4-flash", "default", True, False),
    NativeModel("deepseek-v4-flash-search", "default", True, True),
    NativeModel("deepseek-v4-pro", "expert", True, False),
    NativeModel("deepseek-v4-pro-search", "expert", True, True),
    NativeModel("deepseek-v4-vision", "vision", True, False),
)
_NATIVE_BY_ID = {model.id: model for model in NATIVE_MODELS}

# Vendor names, grouped by the native model they stand for: fast/flash-class
# → chat, pro/opus/codex/o-series → reasoner, deep research → reasoner with
# search, search previews → chat with search, vision-class → vision.
_BUILTIN_GROUPS: dict[str, tuple[str, ...]] = {
    "deepseek-chat": (
        "gpt-4", "gpt-4-0613", "gpt-4-32k", "gpt-4-turbo", "gpt-4-turbo-preview",
        "gpt-4-turbo-2024-04-09", "gpt-4o", "gpt-4o-mini", "gpt-4o-2024-05-13",
        "gpt-4o-2024-08-06", "gpt-4o-2024-11-20", "gpt-4o-mini-2024-07-18", "chatgpt-4o",
        "chatgpt-4o-latest", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4.5-preview",
        "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-chat", "gpt-5-chat-latest", "gpt-5.1",
        "gpt-5.1-mini", "gpt-5.1-chat-latest", "gpt-5.2", "gpt-5.2-mini",
        "gpt-5.2-chat-latest", "gpt-5.5", "gpt-5.5-mini",
        "claude-sonnet-5-5", "claude-haiku-5-5", "claude-sonnet-4-6", "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929", "claude-haiku-4-5", "claude-haiku-4-5-20251001",
        "claude-sonnet-4-0", "claude-sonnet-4-20250514", "claude-3-7-sonnet-latest",
        "claude-3-7-sonnet-20250219", "claude-3-5-sonnet", "claude-3-5-sonnet-latest",
        "claude-3-5-sonnet-20240620", "claude-3-5-sonnet-20241022", "claude-3-5-haiku",
        "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022", "claude-3-sonnet-20240229",
        "claude-3-haiku-20240307",
        "gemini-1.5-flash", "gemini-1.5-flash-latest", "gemini-1.5-flash-8b",
        "gemini-2.0-flash", "gemini-2.0-flash-001", "gemini-2.0-flash-lite",
        "gemini-2.0-flash-exp", "gemini-2.5-flash", "gemini-2.5-flash-lite",
        "gemini-2.5-flash-preview-05-20", "gemini-flash-latest", "gemini-flash-lite-latest",
        "gemini-3-flash-preview", "gemini-3.1-flash-lite-preview", "gemini-3.5-flash-lite",
        "gemini-3.8-flash",
        "llama-3.1-8b-instruct", "llama-3.1-70b-instruct", "llama-3.3-70b-instruct",
        "mistral-large-latest",
        "mistral-small-latest", "command-r-plus",
    ),
    "deepseek-reasoner": (
        "o1", "o1-mini", "o1-preview", "o1-pro", "o3", "o3-mini", "o3-pro", "o4-mini",
        "gpt-5-pro", "gpt-5.2-pro", "gpt-5.5-pro", "gpt-5-codex", "gpt-5-codex-mini",
        "gpt-5.1-codex", "gpt-5.1-codex-mini", "gpt-5.1-codex-max", "gpt-5.2-codex",
        "gpt-5.3-codex", "codex-mini-latest",
        "claude-opus-5-5", "claude-opus-4-6", "claude-opus-4-5", "claude-opus-4-5-20251101",
        "claude-opus-4-1", "claude-opus-4-1-20250805", "claude-opus-4-0",
        "claude-opus-4-20250514", "claude-3-opus", "claude-3-opus-latest",
        "claude-3-opus-20240229",
        "gemini-pro", "gemini-pro-latest", "gemini-1.5-pro", "gemini-1.5-pro-latest",
        "gemini-2.0-pro-exp", "gemini-2.0-flash-thinking-exp", "gemini-2.5-pro",
        "gemini-2.5-pro-preview-06-05", "gemini-3-pro-preview", "gemini-3.1-pro-preview",
    ),
    "deepseek-reasoner-search": ("o3-deep-research", "o4-mini-deep-research"),
    "deepseek-chat-search": (
        "gpt-4o-search-preview", "gpt-4o-mini-search-preview", "gpt-5-search-api",
    ),
    "deepseek-vision-chat": ("gemini-pro-vision", "gpt-4-vision-preview"),
}
# DeepSeek's own release names (official API, relays, local runtimes) → the
# web-chat model that serves them: V3 / V3.1 / V3.2 chat, R1 and its distills
# reason. Kept apart from the vendor aliases; an unlisted deepseek-* name
# is still refused, so a typo shows.
DEEPSEEK_RELEASES: dict[str, str] = {
    **dict.fromkeys((
        "deepseek-v3", "deepseek-v3-0324", "deepseek-v3-250324", "deepseek-v3.1",
        "deepseek-v3-1", "deepseek-v3-1-250821", "deepseek-v3.1-terminus",
        "deepseek-v3-1-terminus", "deepseek-v3.2", "deepseek-v3.2-exp", "deepseek-v3-2-exp",
        "deepseek-v2.5", "deepseek-coder", "deepseek-coder-v2",
    ), "deepseek-chat"),
    **dict.fromkeys((
        "deepseek-r1", "deepseek-r1-0528", "deepseek-r1-250528", "deepseek-r1-250120",
        "deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b",
        "deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-qwen-32b",
        "deepseek-r1-distill-llama-8b", "deepseek-r1-distill-llama-70b",
    ), "deepseek-reasoner"),
}
BUILTIN_ALIASES: dict[str, str] = {
    name: native for native, names in _BUILTIN_GROUPS.items() for name in names
}

DEFAULT_CLAUDE_MAPPING = {"fast": "deepseek-chat", "slow": "deepseek-reasoner"}
# Vendors whose models are not DeepSeek's and are not imitated (doubao, qwen,
# grok …) are absent on purpose: their names are refused, not faked.
_FAMILY_PREFIXES = ("gpt-", "o1", "o3", "claude-", "gemini-", "llama-", "mistral-", "command-")
_RETIRED = re.compile(r"gpt-3\.5|gpt-35|claude-instant|claude-[12](?:[.-]|$)")
_REASONER_WORDS = ("reason", "opus", "r1", "slow")
_CLAUDE_SLOW_WORDS = ("opus", "reasoner", "slow")
_LOGGED_NAMES_LIMIT = 4096


def _normalise(name: str) -> str:
    return name.strip().lower()


def _family_rule(name: str) -> str:
    """Keyword guess for an unlisted name of a known vendor family."""
    thinking = any(word in name for word in _REASONER_WORDS) or name.startswith(("o1", "o3"))
    tier = "vision-" if "vision" in name else ""
    kind = "reasoner" if thinking else "chat"
    return f"deepseek-{tier}{kind}{'-search' if 'search' in name else ''}"


def _native_targets(mapping: dict[str, str] | None, what: str) -> dict[str, str]:
    """Normalised entries whose target is native; the rest are dropped loudly."""
    valid: dict[str, str] = {}
    for key, target in (mapping or {}).items():
        if not isinstance(key, str) or not isinstance(target, str):
            continue
        if _normalise(target) in _NATIVE_BY_ID:
            valid[_normalise(key)] = _normalise(target)
        else:
            logger.warning("%s entry %r ignored: %r is not a native model", what, key, target)
    return valid


class ModelCatalog:
    """The native models, the alias map and the rules that resolve a name.

    ``configure`` replaces settings at once (hot reload from the admin API).
    """

    def __init__(
        self,
        *,
        aliases: dict[str, str] | None = None,
        claude_mapping: dict[str, str] | None = None,
        family_fallback: bool = True,
    ) -> None:
        self._aliases: dict[str, str] = {}
        # Registered by plugins: name → native id; ``_listed`` keeps the
        # registered model ids (in order) that model lists show.
        self._plugin_names: dict[str, str] = {}
        self._listed: list[str] = []
        self._claude = dict(DEFAULT_CLAUDE_MAPPING)
        self._family_fallback = family_fallback
        # (name, native) pairs already logged: a changed mapping logs anew.
        self._logged: set[tuple[str, str]] = set()
        self.configure(aliases=aliases or {}, claude_mapping=claude_mapping or {})

    def configure(
        self,
        *,
        aliases: dict[str, str] | None = None,
        claude_mapping: dict[str, str] | None = None,
        family_fallback: bool | None = None,
    ) -> None:
        """Replace the given settings; an argument left as None keeps its value."""
        if aliases is not None:
            self._aliases = _native_targets(aliases, "model_aliases")
        if claude_mapping is not None:
            self._claude = {**DEFAULT_CLAUDE_MAPPING,
                            **_native_targets(claude_mapping, "claude_mapping")}
        if family_fallback is not None:
            self._family_fallback = family_fallback

    def natives(self) -> list[NativeModel]:
        """Every native model, in the order the model lists show them."""
        return list(NATIVE_MODELS)

    def native(self, model_id: str) -> NativeModel | None:
        """The native model with this id (case-insensitive), if any."""
        return _NATIVE_BY_ID.get(_normalise(model_id))

    def aliases(self) -> dict[str, str]:
        """The built-in alias map overlaid by the plugins' and the configured one."""
        return {**BUILTIN_ALIASES, **self._plugin_names, **self._aliases}

    def configured_aliases(self) -> dict[str, str]:
        """The operator's own aliases (``models.aliases``), normalised."""
        return dict(self._aliases)

    def listed(self) -> list[tuple[str, NativeModel]]:
        """(id, native) for what model lists show: the natives, then the model
        ids plugins registered."""
        return [*((m.id, m) for m in NATIVE_MODELS),
                *((name, _NATIVE_BY_ID[self._plugin_names[name]]) for name in self._listed)]

    def register(self, name: str, native: str, *, listed: bool) -> None:
        """A plugin's model id (``listed``) or alias for a native model. A
        native id, or a name another plugin took, cannot be registered."""
        key, target = _normalise(name), _normalise(native)
        if target not in _NATIVE_BY_ID:
            raise ValueError(f"{native!r} is not a native model")
        if not key or key in _NATIVE_BY_ID or key in self._plugin_names:
            raise ValueError(f"model name {name!r} is already taken")
        self._plugin_names[key] = target
        if listed:
            self._listed.append(key)

    def unregister(self, name: str) -> None:
        """Forget a plugin's name (its plugin failed to load)."""
        key = _normalise(name)
        self._plugin_names.pop(key, None)
        if key in self._listed:
            self._listed.remove(key)

    def resolve(self, name: str, *, family: str | None = None) -> ResolvedModel:
        """Map a client's model name onto a native model or raise ModelNotFound.

        ``family`` names the route's API family; on Claude routes Claude names
        go through ``claude_mapping``. A ``-nothinking`` suffix on any name
        forces thinking off.
        """
        key = _normalise(name)
        base = key.removesuffix(NO_THINKING_SUFFIX)
        no_thinking = base != key
        native = _NATIVE_BY_ID.get(self._native_id(base, family) or "")
        if native is None:
            raise ModelNotFound(name)
        self._log_pick(name, native.id, no_thinking)
        return ResolvedModel(
            requested=name,
            native=native.id,
            model_type=native.model_type,
            thinking=native.thinking and not no_thinking,
            search=native.search,
            force_no_thinking=no_thinking,
        )

    def _native_id(self, name: str, family: str | None) -> str | None:
        """Native id → configured alias → built-in alias / Claude mapping → family rule."""
        if name in _NATIVE_BY_ID:
            return name
        if name in DEEPSEEK_RELEASES:
            return DEEPSEEK_RELEASES[name]
        if name in self._aliases:
            return self._aliases[name]
        if name in self._plugin_names:
            return self._plugin_names[name]
        if _RETIRED.match(name):
            return None
        listed = name in BUILTIN_ALIASES
        guessable = self._family_fallback and name.startswith(_FAMILY_PREFIXES)
        if family == "claude" and name.startswith("claude") and (listed or guessable):
            slow = any(word in name for word in _CLAUDE_SLOW_WORDS)
            return self._claude["slow" if slow else "fast"]
        if listed:
            return BUILTIN_ALIASES[name]
        return _family_rule(name) if guessable else None

    def _log_pick(self, name: str, native: str, no_thinking: bool) -> None:
        """Say once per distinct name and pick which native model answers it."""
        if (name, native) in self._logged:
            return
        if len(self._logged) >= _LOGGED_NAMES_LIMIT:
            self._logged.clear()
        self._logged.add((name, native))
        suffix = " (thinking forced off)" if no_thinking else ""
        logger.info("model %r resolved to %s%s", name, native, suffix)
