"""``GET /api/v1/models``: the native models with the display metadata this
surface's clients show in their model pickers (name, description, whether
the model takes images)."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from aiohttp import web

from ds2proxy.formats import json_response
from ds2proxy.models import NativeModel

CATALOGUE_DATE = 20250822             # the list is static: so are its dates
CREATED_MS = 1755820800000            # 2025-08-22T00:00:00Z, in milliseconds

_TIERS = {
    "default": "Fast general-purpose chat",
    "expert": "Expert tier for demanding tasks",
    "vision": "Multimodal images and text",
}


def display_name(model_id: str) -> str:
    words = model_id.removeprefix("deepseek-").split("-")
    return "DeepSeek " + " ".join(word.capitalize() for word in words)


def description(model: NativeModel) -> str:
    parts = [_TIERS.get(model.model_type, "General chat")]
    if model.thinking:
        parts.append("reasons before answering")
    if model.search:
        parts.append("searches the web")
    return ", ".join(parts)


def model_entry(model: NativeModel) -> dict[str, Any]:
    name = display_name(model.id)
    return {"id": model.id, "object": "model", "model": model.id, "created": CREATED_MS,
            "owned_by": "deepseek", "name": name, "description": description(model),
            "support": "image" if model.model_type == "vision" else "text", "tip": name}


class ModelRoutes:
    def __init__(self, core: Any, settings: dict[str, Any]) -> None:
        self.core = core
        self.provider = str(settings.get("provider") or "ds2proxy")
        self.name = str(settings.get("name") or "ds2proxy")
        self.locale = str(settings.get("default_locale") or "en-US")
        # This plugin ships inside the ds2proxy distribution: its metadata exists.
        self.version = metadata.version("ds2proxy")

    async def list(self, request: web.Request) -> web.Response:
        return json_response({
            "object": "list",
            "data": [model_entry(m) for m in self.core.models.natives()],
            "version": self.version, "provider": self.provider, "name": self.name,
            "default_locale": self.locale, "status": True, "time": CATALOGUE_DATE,
        })
