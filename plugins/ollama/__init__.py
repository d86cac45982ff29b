"""Ollama API: ``/api/chat``, ``/api/generate``, model listing and details,
and embeddings, for tools written against a local Ollama server.

Settings (``plugins.ollama`` in the config, checked on write, live):
``implied_key`` names one of the configured ``keys`` to assume for
requests that carry no credential at all (many Ollama clients cannot send
one). It is off by default; a request that does send a credential is
checked as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ds2proxy.plugin_api import PluginAPI

from .models import ModelRoutes
from .routes import EmbedRoutes, TurnRoutes


def register(api: PluginAPI) -> None:
    api.require_api("1.0")
    api.check_settings(check_settings)
    errors = api.errors.ollama
    api.claim_paths("/api", errors=errors)
    models = ModelRoutes(api)
    turns = TurnRoutes(api)
    embed = EmbedRoutes(api)
    for method in ("GET", "HEAD"):  # Ollama answers HEAD on these two (liveness probes)
        api.route(method, "/api/version", models.version, errors=errors)
        api.route(method, "/api/tags", models.tags, errors=errors)
    api.route("POST", "/api/show", models.show, errors=errors)
    api.route("GET", "/api/ps", models.ps, errors=errors)
    api.route("POST", "/api/chat", turns.chat, errors=errors)
    api.route("POST", "/api/generate", turns.generate, errors=errors)
    api.route("POST", "/api/embed", embed.embed, errors=errors)
    api.route("POST", "/api/embeddings", embed.embeddings, errors=errors)


def check_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """``implied_key``: a string (the name of a configured key) when given."""
    value = settings.get("implied_key")
    if value is not None and not isinstance(value, str):
        return {"implied_key": "must be a string naming a configured key"}
    return {}
