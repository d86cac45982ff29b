"""``GET /v1beta/models`` and ``GET /v1beta/models/{model}`` in Gemini's shape.

google-genai's ``models.list()`` / ``models.get()`` and tools that probe a
Gemini endpoint read these. The list holds the native models and the Gemini
names the gateway accepts for them, so a client can pick either.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import InvalidRequest, ModelNotFound, PluginAPI, ProxyError, ResolvedModel
from ds2proxy.dialects import json_response

INPUT_TOKEN_LIMIT = 131072
OUTPUT_TOKEN_LIMIT = 65536
METHODS = ("generateContent", "streamGenerateContent", "countTokens")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def served_model(api: PluginAPI, name: str) -> ResolvedModel:
    """The model serving a Gemini name (``models/`` prefix optional, as in
    Google's resource names); an unknown one is Google's 404 NOT_FOUND."""
    if isinstance(name, str) and name.strip().lower().startswith("models/"):
        name = name.strip()[len("models/"):]
    try:
        return api.resolve_model(name, family="gemini")
    except InvalidRequest:
        raise ModelNotFound(name, status=404) from None


def model_entry(name: str, native: str, thinking: bool,
                provider: str | None = None) -> dict[str, Any]:
    shown = name if name == native else f"{name} (served by {native})"
    return {
        "name": f"models/{name}",
        "version": "1",
        "displayName": shown,
        "description": (f"Answered by the provider {provider}" if provider
                        else f"DeepSeek web chat model {native}"),
        "inputTokenLimit": INPUT_TOKEN_LIMIT,
        "outputTokenLimit": OUTPUT_TOKEN_LIMIT,
        "supportedGenerationMethods": list(METHODS),
        "thinking": thinking,
    }


class ModelRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    def _entries(self) -> list[dict[str, Any]]:
        catalog = self.api.models
        entries = [model_entry(m.id, m.id, m.thinking) for m in catalog.natives()]
        for alias, native in sorted(catalog.aliases().items()):
            model = catalog.native(native)
            if alias.startswith("gemini-") and model is not None:
                entries.append(model_entry(alias, native, model.thinking))
        entries += [model_entry(m, m, False, provider)
                    for m, provider in self.api.models.provider_models()]
        return entries

    async def list(self, request: web.Request) -> web.Response:
        """One page of the list; ``nextPageToken`` is the offset of the next page."""
        entries = self._entries()
        start = _int_query(request, "pageToken", 0, 0, len(entries))
        size = _int_query(request, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        body: dict[str, Any] = {"models": entries[start:start + size]}
        if start + size < len(entries):
            body["nextPageToken"] = str(start + size)
        return json_response(body)

    async def get(self, request: web.Request) -> web.Response:
        name = request.match_info["model_id"].removeprefix("models/")
        action = name.rpartition(":")[2]
        if ":" in name and self.api.models.owner(name) is None:
            # a method called with GET; a provider's own id may hold a colon (qwen3:8b)
            raise ProxyError(f"'{action}' takes POST, not GET", status=405,
                             code="method_not_allowed", type="invalid_request_error")
        resolved = served_model(self.api, name)
        provider = self.api.models.owner(name)
        return json_response(model_entry(name, name if provider else resolved.native,
                                         resolved.thinking, provider))


def _int_query(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    """``0`` is the default, as an unset number reads in Protocol Buffers."""
    try:
        value = int(request.query.get(key, default))
    except ValueError:
        raise InvalidRequest(f"'{key}' must be an integer", param=key) from None
    return min(max(value or default, low), high)
