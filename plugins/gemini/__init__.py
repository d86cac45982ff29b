"""Google Gemini family: generateContent, streamGenerateContent, countTokens
and the model list, on the ``/v1beta`` and ``/v1`` prefixes."""

from __future__ import annotations

from ds2proxy.plugin_api import PluginAPI

from .models import ModelRoutes
from .routes import GenerateRoutes

PREFIXES = ("/v1beta", "/v1")


def register(api: PluginAPI) -> None:
    generate = GenerateRoutes(api.core)
    models = ModelRoutes(api.core)
    errors = api.errors.google
    for prefix in PREFIXES:
        api.route("POST", f"{prefix}/models/{{model_action}}", generate.dispatch, errors=errors)
    api.route("GET", "/v1beta/models", models.list, errors=errors)
    api.route("GET", "/v1beta/models/{model}", models.get, errors=errors)
