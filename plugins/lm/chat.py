"""``POST /lm/v2/chat/completions``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.formats.openai_chat import ChatStyle, parse_chat_request, respond_chat

from .validate import validate_body

# A natural end is "normal" here; "stop" would claim a stop sequence cut the
# answer, which this gateway never does. The other canonical reasons keep
# their names (length, content_filter, tool_calls).
STYLE = ChatStyle(reasoning_inline=True, finish_names={"stop": "normal"},
                  opening_chunk=True, content_always=True, usage_in_finish_chunk=True)


class ChatRoutes:
    def __init__(self, core: Any) -> None:
        self.core = core

    async def completions(self, request: web.Request) -> web.StreamResponse:
        caller = self.core.authenticate(request)
        body = await self.core.read_json(request)
        validate_body(body)
        chat = parse_chat_request(body, self.core.resolve_model(body["model"], family="openai"))
        async with self.core.turn(chat, caller) as turn:
            return await respond_chat(self.core, request, turn, chat, STYLE)
