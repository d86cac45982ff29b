"""OpenAI family: models, chat completions (and, in sibling modules, the
Responses and Embeddings APIs).

Settings (``plugins.openai`` in the config, read at start): ``root_routes``
(default true) also serves every route without its ``/v1`` prefix
(``/chat/completions``, ``/models``, ``/responses`` …), answering exactly
as the ``/v1`` form does, for clients configured with a bare host URL.
"""

from __future__ import annotations

from ds2proxy.plugin_api import PluginAPI

from .chat import ChatRoutes
from .embeddings import EmbeddingRoutes
from .models import ModelRoutes
from .responses import ResponsesRoutes


def register(api: PluginAPI) -> None:
    models = ModelRoutes(api.core)
    chat = ChatRoutes(api.core)
    responses = ResponsesRoutes(api.core)
    routes = (
        ("GET", "/models", models.list),
        ("GET", "/models/{model_id}", models.get),
        ("POST", "/chat/completions", chat.completions),
        ("POST", "/responses", responses.create),
        ("GET", "/responses/{response_id}", responses.get),
        ("DELETE", "/responses/{response_id}", responses.delete),
        ("POST", "/embeddings", EmbeddingRoutes(api.core).create),
    )
    prefixes = ["/v1"] + ([""] if api.settings.get("root_routes", True) is not False else [])
    for prefix in prefixes:
        for method, path, handler in routes:
            api.route(method, prefix + path, handler, errors=api.errors.openai)
