"""The dialect layer: wire knowledge shared by several dialect plugins.

Chat Completions (``openai_chat``, ``chat_stream``) and Anthropic Messages
(``anthropic_request``, ``anthropic_messages``) parsing and rendering, each
dialect's ``tool_choice`` (``tool_choice``), thinking switches
(``thinking``), content-as-text (``content``), field checks and sampling
ranges (``validate``, ``sampling``), and JSON redaction (``redact``).

Plugins import it beside :mod:`ds2proxy.plugin_api` (plugins never import
each other, so what two of them share lives here). It works on the
canonical types; the engine never imports it (tests/test_layering.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    """A JSON response serialised with orjson (UTF-8, no ASCII escaping)."""
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)
