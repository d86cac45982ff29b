"""LM v2 surface: ``POST /lm/v2/chat/completions``, a chat-completions
dialect with strict parameter ranges, reasoning inline as
``<think>…</think>`` before the answer, and its own finish_reason words."""

from __future__ import annotations

from ds2proxy.plugin_api import PluginAPI

from .chat import ChatRoutes


def register(api: PluginAPI) -> None:
    api.route("POST", "/lm/v2/chat/completions", ChatRoutes(api.core).completions,
              errors=api.errors.openai)
