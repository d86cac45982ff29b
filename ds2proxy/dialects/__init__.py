"""Wire shapes shared by several dialect plugins (errors, chat completions)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    """A JSON response serialised with orjson (UTF-8, no ASCII escaping)."""
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        headers=headers)
