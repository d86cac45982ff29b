"""OpenAI family: models, chat completions (and, in sibling modules, the
Responses and Embeddings APIs)."""

from __future__ import annotations

from ds2proxy.plugin_api import PluginAPI

from .chat import ChatRoutes
from .models import ModelRoutes


def register(api: PluginAPI) -> None:
    models = ModelRoutes(api.core)
    chat = ChatRoutes(api.core)
    errors = api.errors.openai
    api.route("GET", "/v1/models", models.list, errors=errors)
    api.route("GET", "/v1/models/{model_id}", models.get, errors=errors)
    api.route("POST", "/v1/chat/completions", chat.completions, errors=errors)
