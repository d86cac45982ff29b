"""``GET /api/v1/models``: every model name this server really answers, with
the display metadata this surface's clients show in their model pickers
(name, description, whether the model takes images).

That is the native models, then the OpenAI / Claude / Gemini names the
surface's own list offers (each answered by the DeepSeek model it resolves
to, which its name and description say), then the configured aliases. The
surface's other vendors (doubao, qwen, grok) are not DeepSeek models and are
not listed: asking for them is a ``model_not_found``."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import InvalidRequest, NativeModel, PluginAPI
from ds2proxy.dialects import json_response

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


# The vendor names in the surface's own model list, with its display names.
SURFACE_NAMES: dict[str, str] = {
    "gpt-5-mini": "GPT-5 mini", "gpt-4o": "GPT-4o", "gpt-4.1": "GPT-4.1", "gpt-5": "GPT-5",
    "o3": "GPT o3", "o4-mini": "GPT o4-mini",
    "claude-opus-4-20250514": "Claude 4 Opus",
    "gemini-2.5-flash-preview-05-20": "Gemini 2.5 Flash", "gemini-2.5-pro": "Gemini 2.5 Pro",
}


def model_entry(model: NativeModel, model_id: str | None = None,
                label: str | None = None) -> dict[str, Any]:
    """A native model, or (``model_id``) a name it answers for."""
    model_id = model_id or model.id
    native_name = display_name(model.id)
    name = f"{label or model_id} ({native_name})" if model_id != model.id else native_name
    text = description(model)
    if model_id != model.id:
        text = f"Answered by {model.id}: {text[0].lower()}{text[1:]}"
    return {"id": model_id, "object": "model", "model": model_id, "created": CREATED_MS,
            "owned_by": "deepseek", "name": name, "description": text,
            "support": "image" if model.model_type == "vision" else "text", "tip": name}


def alias_entries(api: PluginAPI) -> list[dict[str, Any]]:
    """The surface's vendor names and the configured aliases that resolve."""
    names = {**SURFACE_NAMES, **dict.fromkeys(api.models.configured_aliases(), None)}
    entries = []
    for alias, label in names.items():
        try:
            resolved = api.resolve_model(alias, family="openai")
        except InvalidRequest:
            continue
        native = api.models.native(resolved.native)
        entries.append(model_entry(native, alias, label))
    return entries


class ModelRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api
        # This plugin ships inside the ds2proxy distribution: its metadata exists.
        self.version = metadata.version("ds2proxy")

    async def list(self, request: web.Request) -> web.Response:
        settings = self.api.settings  # read per request: a change applies at once
        return json_response({
            "object": "list",
            "data": [*(model_entry(m) for m in self.api.models.natives()),
                     *alias_entries(self.api)],
            "version": self.version, "provider": str(settings.get("provider") or "ds2proxy"),
            "name": str(settings.get("name") or "ds2proxy"),
            "default_locale": str(settings.get("default_locale") or "en-US"), "status": True, "time": CATALOGUE_DATE,
        })
