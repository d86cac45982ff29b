"""``POST /api/chat``, ``POST /api/generate``, ``POST /api/embed`` and the
older ``POST /api/embeddings``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.canonical import ChatRequest
from ds2proxy.errors import InvalidRequest, NotImplementedFeature
from ds2proxy.formats import json_response
from ds2proxy.relay import relay
from ds2proxy.tokens import count_tokens_async

from .render import Clock, Kind, StreamRenderer, load_object, whole_object
from .request import base_name, is_load_only, model_name, parse_chat, parse_generate


class TurnRoutes:
    def __init__(self, core: Any, implied_key: str | None) -> None:
        self.core = core
        self.implied_key = implied_key

    def _caller(self, request: web.Request) -> Any:
        return self.core.authenticate(request, implied=self.implied_key)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._turn(request, "chat")

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._turn(request, "generate")

    async def _turn(self, request: web.Request, kind: Kind) -> web.StreamResponse:
        clock = Clock()
        caller = self._caller(request)
        body = await self.core.read_json(request)
        name = model_name(body)
        model = self.core.resolve_model(base_name(name), family="ollama")
        if is_load_only(body, kind):
            return json_response(load_object(name, kind, unload=body.get("keep_alive") == 0))
        parse = parse_chat if kind == "chat" else parse_generate
        chat = parse(body, model)
        async with self.core.turn(chat, caller) as turn:
            clock.mark_opened()
            return await self._respond(request, turn, chat, name, kind, clock)

    async def _respond(self, request: web.Request, turn: Any, chat: ChatRequest, name: str,
                       kind: Kind, clock: Clock) -> web.StreamResponse:
        if not chat.stream:
            result = await turn.collect()
            return json_response(whole_object(result, name, kind, clock))
        renderer = StreamRenderer(name, kind, clock)
        writer = self.core.ndjson(request, renderer.heartbeat)
        return await relay(writer, turn, renderer)


class EmbedRoutes:
    """Answered by the configured embeddings provider; 501 when there is none."""

    def __init__(self, core: Any, implied_key: str | None) -> None:
        self.core = core
        self.implied_key = implied_key

    async def embed(self, request: web.Request) -> web.Response:
        clock = Clock()
        texts, body, caller = await self._read(request, "input")
        embedded = await self._provider(body.get("dimensions"), body, caller).embed_counted(texts)
        vectors, tokens = embedded.vectors, embedded.prompt_tokens
        if tokens is None:
            tokens = sum([await count_tokens_async(t) for t in texts])
        durations = clock.durations()
        return json_response({"model": model_name(body), "embeddings": vectors,
                              "total_duration": durations["total_duration"],
                              "load_duration": 0, "prompt_eval_count": tokens})

    async def embeddings(self, request: web.Request) -> web.Response:
        texts, body, caller = await self._read(request, "prompt")
        vectors = await self._provider(None, body, caller).embed(texts)
        return json_response({"embedding": vectors[0]})

    async def _read(self, request: web.Request, field: str) -> tuple[list[str], dict, Any]:
        caller = self.core.authenticate(request, implied=self.implied_key)
        body = await self.core.read_json(request)
        model_name(body)
        value = body.get(field)
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(
                isinstance(t, str) for t in texts):
            raise InvalidRequest(f"{field} must be a string or a non-empty list of strings",
                                 param=field)
        return texts, body, caller

    def _provider(self, dimensions: Any, body: dict, caller: Any) -> Any:
        if dimensions is not None and (isinstance(dimensions, bool)
                                       or not isinstance(dimensions, int) or dimensions < 1):
            raise InvalidRequest("dimensions must be a positive integer", param="dimensions")
        provider = self.core.embeddings(dimensions, model_name(body), caller)
        if provider is None:
            raise NotImplementedFeature(
                "embeddings are not enabled on this server: set embeddings.provider")
        return provider
