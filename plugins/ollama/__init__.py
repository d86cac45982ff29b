"""Ollama API: ``/api/chat``, ``/api/generate``, model listing and details,
and embeddings, for tools written against a local Ollama server.

Settings (``plugins.ollama`` in the config, read at start):
``implied_key`` names one of the configured ``keys`` to assume for
requests that carry no credential at all (many Ollama clients cannot send
one). It is off by default; a request that does send a credential is
checked as usual.
"""

from __future__ import annotations

from ds2proxy.plugin_api import PluginAPI

from .models import ModelRoutes
from .routes import EmbedRoutes, TurnRoutes


def register(api: PluginAPI) -> None:
    implied = api.settings.get("implied_key")
    implied = implied if isinstance(implied, str) and implied else None
    errors = api.errors.ollama
    models = ModelRoutes(api.core)
    turns = TurnRoutes(api.core, implied)
    embed = EmbedRoutes(api.core, implied)
    api.route("GET", "/api/version", models.version, errors=errors)
    api.route("GET", "/api/tags", models.tags, errors=errors)
    api.route("POST", "/api/show", models.show, errors=errors)
    api.route("GET", "/api/ps", models.ps, errors=errors)
    api.route("POST", "/api/chat", turns.chat, errors=errors)
    api.route("POST", "/api/generate", turns.generate, errors=errors)
    api.route("POST", "/api/embed", embed.embed, errors=errors)
    api.route("POST", "/api/embeddings", embed.embeddings, errors=errors)
