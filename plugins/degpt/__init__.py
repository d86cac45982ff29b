"""Web-chat proxy surface: the ``/api/v1`` routes of a popular web-chat-to-API
proxy (model list with display metadata, chat completions with
``"model": "auto"``, Messages), so clients written against it work here.

Settings (``plugins.degpt`` in the config): ``provider``, ``name`` and
``default_locale`` (strings; checked on write, live) override what
``GET /api/v1/models`` reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ds2proxy.plugin_api import PluginAPI

from .chat import ChatRoutes
from .models import ModelRoutes

PREFIX = "/api/v1"


def register(api: PluginAPI) -> None:
    api.require_api("1.0")
    api.check_settings(check_settings)
    api.claim_paths(PREFIX, errors=api.errors.openai)
    chat = ChatRoutes(api)
    api.route("GET", f"{PREFIX}/models", ModelRoutes(api).list,
              errors=api.errors.openai)
    api.route("POST", f"{PREFIX}/chat/completions", chat.completions, errors=api.errors.openai)
    api.route("POST", f"{PREFIX}/messages", chat.messages, errors=api.errors.anthropic)
    api.route("POST", f"{PREFIX}/messages/count_tokens", chat.count_tokens,
              errors=api.errors.anthropic)


def check_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """``provider``, ``name`` and ``default_locale``: strings when given."""
    return {key: "must be a string" for key in ("provider", "name", "default_locale")
            if key in settings and not isinstance(settings[key], str)}
