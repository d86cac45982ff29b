"""``POST …/messages`` and ``POST …/messages/count_tokens``."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from ds2proxy.dialects.parse_off_loop import parse_request
from ds2proxy.plugin_api import ChatRequest, ModelNotFound, PluginAPI, ResolvedModel
from ds2proxy.dialects import json_response
from ds2proxy.dialects.anthropic_messages import (
    interleaved_thinking,
    parse_messages_request,
    respond_messages,
    searched_tool,
    thinking_omitted,
)


class MessageRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    async def _parse(self, request: web.Request) -> tuple[ChatRequest, dict]:
        """The canonical request, and the body (for how the answer is shown)."""
        body = await self.api.read_json(request)
        model = self._model(body.get("model"))
        interleaved = interleaved_thinking(request.headers.get("anthropic-beta"))
        parse = partial(parse_messages_request, interleaved=interleaved)
        return await parse_request(request, parse, body, model), body

    def _model(self, name: object) -> ResolvedModel:
        """The model serving a Claude name; one that serves nothing is
        Anthropic's 404 ``not_found_error`` (Claude Code then points at
        /model), not a 400."""
        try:
            return self.api.resolve_model(name, family="claude")
        except ModelNotFound as error:
            raise ModelNotFound(name if isinstance(name, str) else "", status=404) from error

    async def create(self, request: web.Request) -> web.StreamResponse:
        caller = self.api.authenticate(request)
        chat, body = await self._parse(request)
        async with self.api.turn(chat, caller) as turn:
            return await respond_messages(self.api, request, turn, chat,
                                          omit_thinking=thinking_omitted(body),
                                          web_search=searched_tool(body, chat))

    async def count_tokens(self, request: web.Request) -> web.Response:
        caller = self.api.authenticate(request)
        chat, _ = await self._parse(request)
        self.api.admit_model(caller, chat.model.requested, chat.model.native)
        return json_response({"input_tokens": await self.api.prompt_tokens(chat)})

