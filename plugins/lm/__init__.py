"""LM v2 surface: ``POST /lm/v2/chat/completions``, a chat-completions
dialect with strict parameter ranges, reasoning inline as
``<think>…</think>`` before the answer, and its own finish_reason words.

Settings (``plugins.lm`` in the config, checked on write, live):
``default_model`` answers requests that leave ``model`` out (else the
server's ``models.default``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ds2proxy.plugin_api import PluginAPI

from .chat import ChatRoutes


def register(api: PluginAPI) -> None:
    api.require_api("1.0")
    api.check_settings(check_settings)
    api.claim_paths("/lm", errors=api.errors.openai)
    routes = ChatRoutes(api)
    api.route("POST", "/lm/v2/chat/completions", routes.completions, errors=api.errors.openai)


def check_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """``default_model``: a non-empty string when given."""
    value = settings.get("default_model")
    if value is not None and not (isinstance(value, str) and value.strip()):
        return {"default_model": "must be a non-empty model name"}
    return {}
