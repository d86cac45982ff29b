"""``POST …/messages`` and ``POST …/messages/count_tokens``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.canonical import ChatRequest
from ds2proxy.formats import json_response
from ds2proxy.formats.anthropic_messages import parse_messages_request, respond_messages
from ds2proxy.prompt.build import build_prompt
from ds2proxy.structured import format_instructions
from ds2proxy.tokens import count_prompt_tokens
from ds2proxy.toolcall.prompt import build_tool_prompt


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
        return json_response({"input_tokens": prompt_tokens(self.core.config, chat)})


def prompt_tokens(config: Any, chat: ChatRequest) -> int:
    """Tokens of the prompt a turn for ``chat`` would send (same assembly as the turn's)."""
    tool_prompt = ""
    if chat.tools and config.toolcall_mode == "feature_match":
        tool_prompt = build_tool_prompt(chat.tools, chat.tool_choice,
                                        single_call=not chat.parallel_tool_calls)
    extra = format_instructions(chat.response_format)
    tool_prompt = "\n\n".join(part for part in (tool_prompt, extra) if part)
    injection = config.thinking_injection if chat.thinking_enabled else ""
    prompt = build_prompt(chat.messages, tool_prompt=tool_prompt, thinking_injection=injection)
    return count_prompt_tokens(prompt)
