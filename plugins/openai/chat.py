"""``POST /v1/chat/completions``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.dialects.chat_stream import respond_chat
from ds2proxy.dialects.openai_chat import parse_chat_request


class ChatRoutes:
    def __init__(self, core: Any) -> None:
        self.core = core

    async def completions(self, request: web.Request) -> web.StreamResponse:
        caller = self.core.authenticate(request)
        body = await self.core.read_json(request)
        model = self.core.resolve_model(body.get("model"), family="openai")
        chat = parse_chat_request(body, model)
        async with self.core.turn(chat, caller) as turn:
            return await respond_chat(self.core, request, turn, chat)
