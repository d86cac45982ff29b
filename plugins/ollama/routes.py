"""``POST /api/chat``, ``POST /api/generate``, ``POST /api/embed`` and the
older ``POST /api/embeddings``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import (
    ChatRequest,
    DEFAULT_DIMENSIONS,
    InvalidRequest,
    NotImplementedFeature,
    PluginAPI,
    Turn,
)
from ds2proxy.dialects import json_response

from .render import Clock, Kind, StreamRenderer, load_object, whole_object
from .request import base_name, is_load_only, model_name, parse_chat, parse_generate


def implied_key(api: PluginAPI) -> str | None:
    """``plugins.ollama.implied_key``, read per request (a change applies at once)."""
    value = api.settings.get("implied_key")
    return value if isinstance(value, str) and value else None


class TurnRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    def _caller(self, request: web.Request) -> Any:
        return self.api.authenticate(request, implied=implied_key(self.api))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._turn(request, "chat")

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._turn(request, "generate")

    async def _turn(self, request: web.Request, kind: Kind) -> web.StreamResponse:
        clock = Clock()
        caller = self._caller(request)
        body = await self.api.read_json(request)
        name = model_name(body)
        model = self.api.resolve_model(base_name(name), family="ollama")
        if is_load_only(body, kind):
            return json_response(load_object(name, kind, unload=body.get("keep_alive") == 0))
        parse = parse_chat if kind == "chat" else parse_generate
        chat = parse(body, model)
        async with self.api.turn(chat, caller) as turn:
            clock.mark_opened()
            return await self._respond(request, turn, chat, name, kind, clock)

    async def _respond(self, request: web.Request, turn: Turn, chat: ChatRequest, name: str,
                       kind: Kind, clock: Clock) -> web.StreamResponse:
        if not chat.stream:
            result = await turn.collect()
            return json_response(whole_object(result, name, kind, clock))
        renderer = StreamRenderer(name, kind, clock)
        writer = self.api.ndjson(request, renderer.heartbeat)
        return await self.api.relay(writer, turn, renderer)


class EmbedRoutes:
    """Answered by the configured embeddings provider; 501 when there is none."""

    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    async def embed(self, request: web.Request) -> web.Response:
        clock = Clock()
        texts, body = await self._read(request, "input")
        vectors = await self._provider(body.get("dimensions")).embed(texts)
        tokens = sum([await self.api.count_tokens(t) for t in texts])
        durations = clock.durations()
        return json_response({"model": model_name(body), "embeddings": vectors,
                              "total_duration": durations["total_duration"],
                              "load_duration": 0, "prompt_eval_count": tokens})

    async def embeddings(self, request: web.Request) -> web.Response:
        texts, _ = await self._read(request, "prompt")
        vectors = await self._provider(None).embed(texts)
        return json_response({"embedding": vectors[0]})

    async def _read(self, request: web.Request, field: str) -> tuple[list[str], dict]:
        self.api.authenticate(request, implied=implied_key(self.api))
        body = await self.api.read_json(request)
        model_name(body)
        value = body.get(field)
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(
                isinstance(t, str) for t in texts):
            raise InvalidRequest(f"{field} must be a string or a non-empty list of strings",
                                 param=field)
        return texts, body

    def _provider(self, dimensions: Any) -> Any:
        if dimensions is not None and (isinstance(dimensions, bool)
                                       or not isinstance(dimensions, int) or dimensions < 1):
            raise InvalidRequest("dimensions must be a positive integer", param="dimensions")
        provider = self.api.embeddings(dimensions or DEFAULT_DIMENSIONS)
        if provider is None:
            raise NotImplementedFeature(
                "embeddings are not enabled on this server: set embeddings.provider")
        return provider
