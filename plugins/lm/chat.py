"""``POST /lm/v2/chat/completions``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.formats.chat_stream import respond_chat
from ds2proxy.formats.openai_chat import ChatStyle, parse_chat_request

from .shapes import turn_id, usage_shape
from .validate import validate_body

# A natural end is "normal" here; "stop" would claim a stop sequence cut the
# answer, which this gateway never does. The other canonical reasons keep
# their names (length, content_filter, tool_calls).
STYLE = ChatStyle(reasoning_inline=True, finish_names={"stop": "normal"},
                  opening_chunk=True, content_always=True, usage_in_finish_chunk=True,
                  whole_id=turn_id, chunk_id=turn_id, usage_shape=usage_shape)


class ChatRoutes:
    """``default_model``: the model a request without ``model`` gets (the
    plugin setting, else the server's ``models.default``)."""

    def __init__(self, core: Any, default_model: str | None = None) -> None:
        self.core = core
        self.default_model = default_model

    async def completions(self, request: web.Request) -> web.StreamResponse:
        caller = self.core.authenticate(request)
        body = await self.core.read_json(request)
        validate_body(body)
        name = body.get("model") or self.default_model or self.core.config.models.default
        chat = parse_chat_request(body, self.core.resolve_model(name, family="openai"))
        async with self.core.turn(chat, caller) as turn:
            return await respond_chat(self.core, request, turn, chat, STYLE)
