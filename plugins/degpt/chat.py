"""``POST /api/v1/chat/completions``, ``POST /api/v1/messages`` and its
``count_tokens``.

Both accept ``"model": "auto"``: the configured default model answers, and
the response names that model rather than echoing "auto", as the surface's
clients expect.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import PluginAPI, ResolvedModel
from ds2proxy.dialects import json_response
from ds2proxy.dialects.anthropic_messages import (
    interleaved_thinking,
    parse_messages_request,
    respond_messages,
    searched_tool,
    thinking_omitted,
)
from ds2proxy.dialects.chat_stream import respond_chat
from ds2proxy.dialects.legacy_functions import legacy_style
from ds2proxy.dialects.openai_chat import ChatStyle, parse_chat_request

from .ids import completion_id, usage_shape

AUTO = "auto"

# Every chunk choice carries "logprobs": null and every delta a "content",
# and an empty chunk opens the stream, as this surface's stream does.
STYLE = ChatStyle(chunk_logprobs=True, opening_chunk=True, content_always=True,
                  whole_id=completion_id, usage_shape=usage_shape)


class ChatRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    def _model(self, name: Any, family: str) -> ResolvedModel:
        if isinstance(name, str) and name.strip().lower() == AUTO:
            name = self.api.default_model
        return self.api.resolve_model(name, family=family)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        chat = parse_chat_request(body, self._model(body.get("model"), "openai"))
        async with self.api.turn(chat, caller) as turn:
            return await respond_chat(self.api, request, turn, chat, legacy_style(STYLE, body))

    async def messages(self, request: web.Request) -> web.StreamResponse:
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        chat = parse_messages_request(body, self._model(body.get("model"), "claude"),
                                      interleaved=interleaved_thinking(
                                          request.headers.get("anthropic-beta")))
        async with self.api.turn(chat, caller) as turn:
            return await respond_messages(self.api, request, turn, chat,
                                          completion_id(turn.id),
                                          omit_thinking=thinking_omitted(body),
                                          web_search=searched_tool(body, chat))

    async def count_tokens(self, request: web.Request) -> web.Response:
        """The Messages API's ``count_tokens``, for Anthropic clients on this
        surface: the prompt tokens ``messages`` would report."""
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        chat = parse_messages_request(body, self._model(body.get("model"), "claude"),
                                      interleaved=interleaved_thinking(
                                          request.headers.get("anthropic-beta")))
        self.api.admit_model(caller, chat.model.requested, chat.model.native)
        return json_response({"input_tokens": await self.api.prompt_tokens(chat)})
