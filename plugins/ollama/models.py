"""``GET /api/version``, ``GET /api/tags``, ``POST /api/show``, ``GET /api/ps``.

The models are the native ones ds2proxy serves. Nothing is stored or loaded
locally, so sizes are 0, the digest is a stable hash of the name, and
``/api/ps`` lists nothing. ``/api/show`` reports capabilities as the web
chat really has them: every tier completes, calls tools (emulated) and can
think (the DeepThink switch); only the vision tier sees images.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import InvalidRequest, ModelNotFound, PluginAPI
from ds2proxy.dialects import json_response

from .request import model_name, served_name

VERSION = "0.12.0"
MODIFIED_AT = "2025-01-01T00:00:00Z"
CONTEXT_LENGTH = 131072


def details(family: str = "deepseek") -> dict[str, Any]:
    return {"parent_model": "", "format": "", "family": family, "families": [family],
            "parameter_size": "", "quantization_level": ""}


def tag_object(model_id: str, family: str = "deepseek") -> dict[str, Any]:
    """A tag; a provider's model has the provider's name as its family."""
    return {"name": model_id, "model": model_id, "modified_at": MODIFIED_AT, "size": 0,
            "digest": hashlib.sha256(model_id.encode()).hexdigest(),
            "details": details(family)}


def capabilities(model_type: str) -> list[str]:
    caps = ["completion", "tools", "thinking"]
    return caps + ["vision"] if model_type == "vision" else caps


class ModelRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    async def version(self, request: web.Request) -> web.Response:
        return json_response({"version": VERSION})

    async def tags(self, request: web.Request) -> web.Response:
        tags = [tag_object(m.id) for m in self.api.models.listed()]
        tags += [tag_object(m, provider) for m, provider in self.api.models.provider_models()]
        return json_response({"models": tags})

    async def ps(self, request: web.Request) -> web.Response:
        return json_response({"models": []})

    async def show(self, request: web.Request) -> web.Response:
        body = await self.api.read_json(request)
        name = model_name(body)
        try:
            resolved = self.api.resolve_model(served_name(self.api, name), family="ollama")
        except InvalidRequest:
            raise ModelNotFound(name, status=404) from None
        native = resolved.native
        return json_response({
            "license": "",
            "modelfile": f"# served by ds2proxy\nFROM {native}\n",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": details(),
            "model_info": {"general.architecture": "deepseek", "general.basename": native,
                           "deepseek.context_length": CONTEXT_LENGTH},
            "capabilities": capabilities(resolved.model_type),
            "modified_at": MODIFIED_AT,
        })
