"""OpenAI family: models, chat completions (and, in sibling modules, the
Responses and Embeddings APIs).

Settings (``plugins.openai`` in the config, checked on write; routes are
mounted at start, so a change applies after a restart): ``root_routes``
(default true) also serves every route without its ``/v1`` prefix
(``/chat/completions``, ``/models``, ``/responses`` …), answering exactly
as the ``/v1`` form does, for clients configured with a bare host URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ds2proxy.plugin_api import PluginAPI

from .chat import ChatRoutes
from .embeddings import EmbeddingRoutes
from .models import ModelRoutes
from .responses import ResponsesRoutes


def register(api: PluginAPI) -> None:
    api.require_api("1.0")
    api.check_settings(check_settings)
    models = ModelRoutes(api)
    chat = ChatRoutes(api)
    responses = ResponsesRoutes(api)
    routes = (
        ("GET", "/models", models.list),
        # Any character (the Claude and Gemini plugins spell it the same): a
        # provider's model id may hold a slash, which a raw client sends as is.
        ("GET", r"/models/{model_id:[\s\S]+}", models.get),
        ("POST", "/chat/completions", chat.completions),
        ("POST", "/responses", responses.create),
        ("POST", "/responses/input_tokens", responses.input_tokens),
        ("GET", "/responses/{response_id}", responses.get),
        ("DELETE", "/responses/{response_id}", responses.delete),
        ("GET", "/responses/{response_id}/input_items", responses.input_items),
        ("POST", "/responses/{response_id}/cancel", responses.cancel),
        ("POST", "/embeddings", EmbeddingRoutes(api).create),
    )
    api.claim_paths("/v1", errors=api.errors.openai)
    prefixes = ["/v1"] + ([""] if api.settings.get("root_routes", True) is not False else [])
    for prefix in prefixes:
        for method, path, handler in routes:
            api.route(method, prefix + path, handler, errors=api.errors.openai)


def check_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """``root_routes``: a boolean when given."""
    if "root_routes" in settings and not isinstance(settings["root_routes"], bool):
        return {"root_routes": "must be true or false"}
    return {}
