"""LM v2 surface: ``POST /lm/v2/chat/completions``, a chat-completions
dialect with strict parameter ranges, reasoning inline as
``<think>…</think>`` before the answer, and its own finish_reason words.

Settings (``plugins.lm`` in the config, read at start): ``default_model``
answers requests that leave ``model`` out (else the server's
``models.default``)."""

from __future__ import annotations

from ds2proxy.plugin_api import PluginAPI

from .chat import ChatRoutes


def register(api: PluginAPI) -> None:
    default = api.settings.get("default_model")
    routes = ChatRoutes(api.core, default if isinstance(default, str) and default else None)
    api.route("POST", "/lm/v2/chat/completions", routes.completions, errors=api.errors.openai)
