"""The ``embeddings`` config section: which engine serves the embeddings routes.

``provider`` is empty or ``none`` (the routes answer 501), ``testing`` (hash
vectors, for tests only) or the name of an entry of ``providers``; ``model``
is the provider's model id (empty: the model the client asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config_values import ConfigError
from .embeddings import TESTING

OFF = ("", "none")
RENAMED = {"deterministic": TESTING}


@dataclass(frozen=True, slots=True)
class EmbeddingsSettings:
    provider: str = ""
    model: str = ""


def _provider_names(data: dict[str, Any]) -> list[str]:
    items = data.get("providers")
    if not isinstance(items, list):
        return []
    return [p["name"] for p in items if isinstance(p, dict) and isinstance(p.get("name"), str)]


def _text(section: dict[str, Any], name: str) -> str:
    value = section.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"embeddings.{name}", "must be a string")
    return value.strip()


def parse_embeddings(data: dict[str, Any]) -> EmbeddingsSettings:
    section = data.get("embeddings") or {}
    if not isinstance(section, dict):
        raise ConfigError("embeddings", "must be an object")
    provider, model = _text(section, "provider"), _text(section, "model")
    names = _provider_names(data)
    if provider in RENAMED and provider not in names:
        raise ConfigError("embeddings.provider", f"'{provider}' was renamed: write "
                          f"'{RENAMED[provider]}' for the hash-based test vectors, or name "
                          "a configured provider")
    if provider not in OFF and provider != TESTING and provider not in names:
        known = ", ".join(repr(n) for n in names) or "none is configured"
        raise ConfigError("embeddings.provider", f"no provider named '{provider}' "
                          f"(providers: {known}; or 'testing', 'none')")
    return EmbeddingsSettings("" if provider == "none" else provider, model)
