"""``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import InvalidRequest, ModelNotFound, PluginAPI
from ds2proxy.dialects import json_response

CREATED = 1735689600  # fixed: the catalogue is static, so is its timestamp


def model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "deepseek",
            "permission": []}


class ModelRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    async def list(self, request: web.Request) -> web.Response:
        data = [model_object(m.id) for m in self.api.models.listed()]
        return json_response({"object": "list", "data": data})

    async def get(self, request: web.Request) -> web.Response:
        name = request.match_info["model_id"]
        try:
            resolved = self.api.resolve_model(name, family="openai")
        except InvalidRequest:
            raise ModelNotFound(name, status=404) from None
        listed = {m.id for m in self.api.models.listed()}
        key = name.strip().lower()
        return json_response(model_object(key if key in listed else resolved.native))
