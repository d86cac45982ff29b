"""``POST /v1/chat/completions``."""

from __future__ import annotations


from aiohttp import web

from ds2proxy.dialects.parse_off_loop import parse_request
from ds2proxy.dialects.chat_stream import respond_chat
from ds2proxy.dialects.legacy_functions import legacy_style
from ds2proxy.dialects.openai_chat import ChatStyle, parse_chat_request
from ds2proxy.plugin_api import PluginAPI


class ChatRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    async def completions(self, request: web.Request) -> web.StreamResponse:
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        model = self.api.resolve_model(body.get("model"), family="openai")
        chat = await parse_request(request, parse_chat_request, body, model)
        style = legacy_style(ChatStyle(), body)
        async with self.api.turn(chat, caller) as turn:
            return await respond_chat(self.api, request, turn, chat, style)
