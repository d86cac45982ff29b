"""Google Gemini family: generateContent, streamGenerateContent, countTokens,
embedContent, batchEmbedContents and the model list, on the ``/v1beta``,
``/v1`` and ``/v1alpha`` prefixes (google-genai picks one with
``api_version``; early thinking examples used ``v1alpha``)."""

from __future__ import annotations

from aiohttp import web

from ds2proxy.plugin_api import PluginAPI

from .models import ModelRoutes
from .routes import GenerateRoutes

PREFIXES = ("/v1beta", "/v1", "/v1alpha")


def register(api: PluginAPI) -> None:
    api.require_api("1.0")
    generate = GenerateRoutes(api)
    models = ModelRoutes(api)
    errors = api.errors.google
    api.claim_paths("/v1beta", errors=errors)
    api.claim_paths("/v1alpha", errors=errors)
    api.claim_paths("/v1", errors=errors, when=google_client)
    # models/<name>:<action> is Google's path shape whoever sends it.
    api.claim_paths("/v1/models", errors=errors, when=google_action)
    # Any character: a provider's model id may hold a slash
    # (meta-llama/Llama-3.1-8B), which Google's SDK puts in the path as it is,
    # and a name with a line break is still a model the request log names.
    for prefix in PREFIXES:
        api.route("POST", f"{prefix}/models/{{model_action:[\\s\\S]+}}", generate.dispatch,
                  errors=errors)
    for prefix in ("/v1beta", "/v1alpha"):
        api.route("GET", f"{prefix}/models", models.list, errors=errors)
        api.route("GET", f"{prefix}/models/{{model_id:[\\s\\S]+}}", models.get, errors=errors)
    # /v1/models is the OpenAI plugin's too: Google clients get Google's shape.
    api.route("GET", "/v1/models", models.list, errors=errors, when=google_client)
    # The same pattern as the OpenAI and Claude plugins' (one shared route).
    api.route("GET", r"/v1/models/{model_id:[\s\S]+}", models.get, errors=errors,
              when=google_client)


def google_action(request: web.Request) -> bool:
    """``/v1/models/<name>:<action>``: a Gemini method call."""
    name = request.path.removeprefix("/v1/models/")
    return name != request.path and ":" in name and "/" not in name


def google_client(request: web.Request) -> bool:
    """Requests from Google's SDKs and CLI: their key header or query, or their client tag."""
    headers = request.headers
    return ("x-goog-api-key" in headers or "x-goog-api-client" in headers
            or "key" in request.query)
