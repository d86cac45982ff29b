"""``POST /lm/v2/chat/completions``."""

from __future__ import annotations


from aiohttp import web

from ds2proxy.dialects.chat_stream import respond_chat
from ds2proxy.dialects.openai_chat import ChatStyle, parse_chat_request

from .shapes import turn_id, usage_shape
from .validate import validate_body
from ds2proxy.plugin_api import PluginAPI

# A natural end is "normal" here; "stop" says a stop sequence cut the answer
# (finish_name gives it for a matched one). The other canonical reasons keep
# their names (length, content_filter, tool_calls).
STYLE = ChatStyle(reasoning_inline=True, finish_names={"stop": "normal"},
                  opening_chunk=True, content_always=True, usage_in_finish_chunk=True,
                  whole_id=turn_id, chunk_id=turn_id, usage_shape=usage_shape)


class ChatRoutes:
    """A request without ``model`` gets ``plugins.lm.default_model`` (read
    per request, so a change applies at once), else ``models.default``."""

    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    @property
    def default_model(self) -> str | None:
        value = self.api.settings.get("default_model")
        return value if isinstance(value, str) and value else None

    async def completions(self, request: web.Request) -> web.StreamResponse:
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        validate_body(body)
        name = body.get("model") or self.default_model or self.api.default_model
        chat = parse_chat_request(body, self.api.resolve_model(name, family="openai"))
        async with self.api.turn(chat, caller) as turn:
            return await respond_chat(self.api, request, turn, chat, STYLE)
