"""OpenAI family: models, chat completions (and, in sibling modules, the
Responses and Embeddings APIs)."""

from __future__ import annotations

from ds2proxy.plugin_api import PluginAPI

from .chat import ChatRoutes
from .embeddings import EmbeddingRoutes
from .models import ModelRoutes
from .responses import ResponsesRoutes


def register(api: PluginAPI) -> None:
    models = ModelRoutes(api.core)
    chat = ChatRoutes(api.core)
    errors = api.errors.openai
    api.route("GET", "/v1/models", models.list, errors=errors)
    api.route("GET", "/v1/models/{model_id}", models.get, errors=errors)
    api.route("POST", "/v1/chat/completions", chat.completions, errors=errors)
    responses = ResponsesRoutes(api.core)
    api.route("POST", "/v1/responses", responses.create, errors=errors)
    api.route("GET", "/v1/responses/{response_id}", responses.get, errors=errors)
    api.route("POST", "/v1/embeddings", EmbeddingRoutes(api.core).create, errors=errors)
