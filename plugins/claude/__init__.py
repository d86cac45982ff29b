"""Claude family: Anthropic Messages (stream and not), count_tokens and the
model list, on the ``/anthropic/v1``, ``/v1`` and bare prefixes Claude
clients use (``/v1/models`` only for Anthropic clients: it is OpenAI's too). Parsing and rendering live in ``ds2proxy.dialects.anthropic_messages``
so other surfaces serve the same Messages semantics."""

from __future__ import annotations

from aiohttp import web

from ds2proxy.plugin_api import PluginAPI

from .messages import MessageRoutes
from .models import ModelRoutes

MESSAGE_PREFIXES = ("/anthropic/v1", "/v1", "")


def register(api: PluginAPI) -> None:
    api.require_api("1.0")
    models = ModelRoutes(api)
    messages = MessageRoutes(api)
    errors = api.errors.anthropic
    for claimed in ("/anthropic", "/v1/messages", "/messages"):
        api.claim_paths(claimed, errors=errors)
    api.route("GET", "/anthropic/v1/models", models.list, errors=errors)
    # Any character, as the OpenAI and Gemini plugins spell it (one shared route):
    # a provider's model id may hold a slash (meta-llama/Llama-3.1-8B).
    api.route("GET", r"/anthropic/v1/models/{model_id:[\s\S]+}", models.get, errors=errors)
    # A root base URL (Claude Code's default) lists models at /v1/models.
    api.route("GET", "/v1/models", models.list, errors=errors, when=anthropic_client)
    api.route("GET", r"/v1/models/{model_id:[\s\S]+}", models.get, errors=errors,
              when=anthropic_client)
    for prefix in MESSAGE_PREFIXES:
        api.route("POST", f"{prefix}/messages", messages.create, errors=errors)
        api.route("POST", f"{prefix}/messages/count_tokens", messages.count_tokens,
                  errors=errors)


def anthropic_client(request: web.Request) -> bool:
    """Anthropic's SDKs and Claude Code send ``anthropic-version`` on every call."""
    return "anthropic-version" in request.headers
