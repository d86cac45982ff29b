"""``POST …/messages`` and ``POST …/messages/count_tokens``."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from ds2proxy.dialects.parse_off_loop import parse_request
from ds2proxy.plugin_api import ChatRequest, PluginAPI
from ds2proxy.dialects import json_response
from ds2proxy.dialects.anthropic_messages import (
    interleaved_thinking,
    parse_messages_request,
    respond_messages,
)


class MessageRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    async def _parse(self, request: web.Request) -> ChatRequest:
        body = await self.api.read_json(request)
        model = self.api.resolve_model(body.get("model"), family="claude")
        interleaved = interleaved_thinking(request.headers.get("anthropic-beta"))
        parse = partial(parse_messages_request, interleaved=interleaved)
        return await parse_request(request, parse, body, model)

    async def create(self, request: web.Request) -> web.StreamResponse:
        caller = self.api.authenticate(request)
        chat = await self._parse(request)
        async with self.api.turn(chat, caller) as turn:
            return await respond_messages(self.api, request, turn, chat)

    async def count_tokens(self, request: web.Request) -> web.Response:
        caller = self.api.authenticate(request)
        chat = await self._parse(request)
        self.api.admit_model(caller, chat.model.requested, chat.model.native)
        return json_response({"input_tokens": await self.api.prompt_tokens(chat)})

