"""``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.errors import InvalidRequest, ModelNotFound
from ds2proxy.formats import json_response

CREATED = 1735689600  # fixed: the catalogue is static, so is its timestamp


def model_object(model_id: str, owned_by: str = "deepseek") -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": owned_by,
            "permission": []}


class ModelRoutes:
    def __init__(self, core: Any) -> None:
        self.core = core

    async def list(self, request: web.Request) -> web.Response:
        data = [model_object(m.id) for m in self.core.models.natives()]
        data += [model_object(m, provider) for m, provider in self.core.provider_models()]
        return json_response({"object": "list", "data": data})

    async def get(self, request: web.Request) -> web.Response:
        name = request.match_info["model_id"]
        try:
            resolved = self.core.resolve_model(name, family="openai")
        except InvalidRequest:
            raise ModelNotFound(name, status=404) from None
        owner = self.core.model_owner(name)
        return json_response(model_object(name if owner else resolved.native,
                                          owner or "deepseek"))
