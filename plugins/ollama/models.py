"""``GET /api/version``, ``GET /api/tags``, ``POST /api/show``, ``GET /api/ps``.

The models are the native ones ds2proxy serves. Nothing is stored or loaded
locally, so sizes are 0, the digest is a stable hash of the name, and
``/api/ps`` lists nothing. ``/api/show`` reports capabilities as the web
chat really has them: every tier completes, calls tools (emulated), can
think (the DeepThink switch) and fills in the middle (``suffix``, asked in
the prompt); only the vision tier sees images.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import InvalidRequest, ModelNotFound, PluginAPI, ResolvedModel
from ds2proxy.dialects import json_response
from ds2proxy.dialects.validate import boolean

from .request import base_name, model_name

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


def resolve(api: PluginAPI, name: str) -> ResolvedModel:
    """The model a name serves (see :func:`served_name`)."""
    return api.resolve_model(served_name(api, name), family="ollama")


def served_name(api: PluginAPI, name: str) -> str:
    """The Ollama tag is dropped (``deepseek-r1:14b``) unless the tag is part
    of a provider's model id: one ``/api/tags`` lists (``qwen2.5:7b`` on an
    Ollama-compatible provider), one a provider's glob admits while the pool
    does not serve the bare name (``qwen3:8b`` under ``qwen3:*``; a catch-all
    provider does not take ``deepseek-r1:14b`` from the pool), or, for an
    untagged name, the ``:latest`` a provider serves (``llama3``)."""
    full, base = name.strip(), base_name(name)
    owner = api.models.owner
    if full == base:
        latest = f"{full}:latest"
        if owner(full) is None and owner(latest) is not None and not _pool_serves(api, full):
            return latest
        return full
    listed = {model.lower() for model, _provider in api.models.provider_models()}
    if full.lower() in listed:
        return full
    if owner(full) is None:
        return base
    return base if owner(base) is None and _pool_serves(api, base) else full


def _pool_serves(api: PluginAPI, name: str) -> bool:
    try:
        api.resolve_model(name, family="ollama")
    except InvalidRequest:
        return False
    return True


def capabilities(model_type: str) -> list[str]:
    caps = ["completion", "tools", "thinking", "insert"]
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
        boolean(body.get("verbose"), "verbose")  # every field is read here; nothing is elided
        try:
            resolved = resolve(self.api, name)
        except InvalidRequest:
            raise ModelNotFound(name, status=404) from None
        native = resolved.native
        family = self.api.models.owner(resolved.requested) or "deepseek"  # as /api/tags has it
        return json_response({
            "license": "",
            "modelfile": f"# served by ds2proxy\nFROM {native}\n",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": details(family),
            "model_info": {"general.architecture": "deepseek", "general.basename": native,
                           "deepseek.context_length": CONTEXT_LENGTH},
            "capabilities": capabilities(resolved.model_type),
            "modified_at": MODIFIED_AT,
        })
