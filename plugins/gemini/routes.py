"""``POST /v1beta/models/{model}:{method}`` (and the same under ``/v1``).

aiohttp matches the ``model:method`` segment as one path variable; the
method after the last colon picks the handler: ``generateContent``,
``streamGenerateContent``, ``countTokens``, ``embedContent`` or
``batchEmbedContents``.
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from ds2proxy.dialects.parse_off_loop import parse_request
from ds2proxy.plugin_api import InvalidRequest, NotFound, PluginAPI
from ds2proxy.dialects import json_response

from .embed import EmbedRoutes
from .fields import pick_dict
from .models import served_model
from .render import generate_content_response
from .request import parse_generate_request
from .stream import respond_stream

GENERATE = "generateContent"
STREAM = "streamGenerateContent"
COUNT = "countTokens"
EMBED = "embedContent"
BATCH_EMBED = "batchEmbedContents"


def split_model_action(segment: str) -> tuple[str, str]:
    """``gemini-2.5-pro:generateContent`` → (``gemini-2.5-pro``, ``generateContent``)."""
    model, colon, action = segment.rpartition(":")
    if not colon or not model:
        raise NotFound(f"no method in '{segment}': expected models/{{model}}:{GENERATE}")
    return model, action


def check_alt(request: web.Request) -> None:
    """``?alt=``: ``sse`` or ``json`` (the default); any other answer format is
    a 400 before the turn, not a JSON array the client did not ask for."""
    alt = request.query.get("alt")
    if alt is not None and alt.lower() not in ("sse", "json"):
        raise InvalidRequest("'alt' must be json or sse", param="alt")


class GenerateRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api
        self.embeddings = EmbedRoutes(api)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        model, action = split_model_action(request.match_info["model_action"])
        if action == GENERATE:
            return await self.generate(request, model, stream=False)
        if action == STREAM:
            return await self.generate(request, model, stream=True)
        if action == COUNT:
            return await self.count_tokens(request, model)
        if action == EMBED:
            return await self.embeddings.embed(request, model)
        if action == BATCH_EMBED:
            return await self.embeddings.batch(request, model)
        raise NotFound(f"method '{action}' is not served; use {GENERATE}, {STREAM}, {COUNT}, "
                       f"{EMBED} or {BATCH_EMBED}")

    async def generate(self, request: web.Request, model_name: str, *,
                       stream: bool) -> web.StreamResponse:
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        model = served_model(self.api, model_name)
        check_alt(request)
        parse = partial(parse_generate_request, stream=stream)
        gemini = await parse_request(request, parse, body, model)
        async with self.api.turn(gemini.chat, caller) as turn:
            if stream:
                return await respond_stream(self.api, request, turn, gemini)
            result = await turn.collect()
        return json_response(generate_content_response(result, gemini.chat,
                                                       show_thoughts=gemini.show_thoughts))

    async def count_tokens(self, request: web.Request, model_name: str) -> web.Response:
        """``{"totalTokens": N}``: the prompt tokens a generate call would report."""
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        model = served_model(self.api, model_name)
        inner = pick_dict(body, "generateContentRequest") or body
        parse = partial(parse_generate_request, stream=False)
        chat = (await parse_request(request, parse, inner, model)).chat
        self.api.admit_model(caller, chat.model.requested, chat.model.native)
        return json_response({"totalTokens": await self.api.prompt_tokens(chat)})
