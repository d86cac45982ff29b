"""``POST …/messages`` and ``POST …/messages/count_tokens``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.canonical import ChatRequest
from ds2proxy.dialects import json_response
from ds2proxy.dialects.anthropic_messages import parse_messages_request, respond_messages


class MessageRoutes:
    def __init__(self, core: Any) -> None:
        self.core = core

    async def _parse(self, request: web.Request) -> ChatRequest:
        body = await self.core.read_json(request)
        model = self.core.resolve_model(body.get("model"), family="claude")
        return parse_messages_request(body, model)

    async def create(self, request: web.Request) -> web.StreamResponse:
        caller = self.core.authenticate(request)
        chat = await self._parse(request)
        async with self.core.turn(chat, caller) as turn:
            return await respond_messages(self.core, request, turn, chat)

    async def count_tokens(self, request: web.Request) -> web.Response:
        self.core.authenticate(request)
        chat = await self._parse(request)
        return json_response({"input_tokens": await self.core.prompt_tokens(chat)})

