"""Web-chat proxy surface: the ``/api/v1`` routes of a popular web-chat-to-API
proxy (model list with display metadata, chat completions with
``"model": "auto"``, Messages), so clients written against it work here.

Settings (``plugins.degpt`` in the config): ``provider``, ``name`` and
``default_locale`` override what ``GET /api/v1/models`` reports.
"""

from __future__ import annotations

from ds2proxy.plugin_api import PluginAPI

from .chat import ChatRoutes
from .models import ModelRoutes

PREFIX = "/api/v1"


def register(api: PluginAPI) -> None:
    chat = ChatRoutes(api.core)
    api.route("GET", f"{PREFIX}/models", ModelRoutes(api.core, api.settings).list,
              errors=api.errors.openai)
    api.route("POST", f"{PREFIX}/chat/completions", chat.completions, errors=api.errors.openai)
    api.route("POST", f"{PREFIX}/messages", chat.messages, errors=api.errors.anthropic)
