"""Newline-delimited JSON streams (the Ollama API's framing).

One JSON object per line. A blank line would break clients that parse every
line, so the keep-alive is an object the plugin supplies (for Ollama, an
empty progress chunk), written while the upstream is silent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from .sse import StreamWriter

Heartbeat = Callable[[], Any]


class NDJSONWriter(StreamWriter):
    content_type = "application/x-ndjson"

    def __init__(self, request: web.Request, *, heartbeat: Heartbeat, **kwargs: Any) -> None:
        super().__init__(request, **kwargs)
        self.heartbeat = heartbeat

    def encode(self, frame: Any) -> bytes:
        return orjson.dumps(frame) + b"\n"

    async def _keepalive(self) -> None:
        await self.send(self.heartbeat())
