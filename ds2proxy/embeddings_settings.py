"""The ``embeddings`` config section: which engine serves the embeddings routes.

``provider`` is empty or ``none`` (the routes answer 501), ``testing`` (hash
vectors, for tests only) or the name of an entry of ``providers``; ``model``
is the provider's model id (empty: the model the client asked for).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config_values import ConfigError
from .embeddings import TESTING
from .settings_schema import FormSpec, setting

OFF = ("", "none")
RENAMED = {"deterministic": TESTING}
TOOLS = "Tool calls and APIs"


def _engines(cfg: Any) -> tuple[str, ...]:
    """What the form offers: off, the test vectors, each configured provider."""
    return ("", TESTING, *(p.name for p in cfg.providers))


def _engine(path: str, value: str) -> str:
    name = value.strip()
    return "" if name in OFF else name


@dataclass(frozen=True, slots=True)
class EmbeddingsSettings:
    provider: str = setting(
        "", "The engine of the embeddings routes: the name of an entry of 'providers' (its "
        "/embeddings endpoint, in batches of its embeddings_batch_size), 'testing' (hash-based "
        "vectors with no meaning, for tests only) or '' / 'none' (embeddings answer 501).",
        check=_engine,
        form=FormSpec(TOOLS, "Embeddings provider", "A configured provider (its /embeddings "
                      "serves the vectors); testing: hash-based test vectors with no meaning; "
                      "(none): embeddings answer 501.", choices_of=_engines))
    model: str = setting(
        "", "The provider's embedding model id; empty: the model the client names.",
        check=lambda path, value: value.strip(),
        form=FormSpec(TOOLS, "Embeddings model", "The provider's embedding model id. Empty: "
                      "the model the client names."))


def check_embeddings(settings: EmbeddingsSettings, providers: Sequence[Any]) -> None:
    """``embeddings.provider`` names an engine that exists."""
    provider = settings.provider
    names = [p.name for p in providers]
    if provider in RENAMED and provider not in names:
        raise ConfigError("embeddings.provider", f"'{provider}' was renamed: write "
                          f"'{RENAMED[provider]}' for the hash-based test vectors, or name "
                          "a configured provider")
    if provider and provider != TESTING and provider not in names:
        known = ", ".join(repr(n) for n in names) or "none is configured"
        raise ConfigError("embeddings.provider", f"no provider named '{provider}' "
                          f"(providers: {known}; or 'testing', 'none')")
