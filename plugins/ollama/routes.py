"""``POST /api/chat``, ``POST /api/generate``, ``POST /api/embed`` and the
older ``POST /api/embeddings``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import (
    Caller,
    ChatRequest,
    EmbeddingProvider,
    InvalidRequest,
    NotImplementedFeature,
    PluginAPI,
    ProxyError,
    ResolvedModel,
    Turn,
)
from ds2proxy.dialects import json_response
from ds2proxy.dialects.parse_off_loop import parse_request
from ds2proxy.dialects.large_json import drained, large_json_response

from .fields import check_embed_fields, check_embeddings_fields, keep_alive_seconds
from .models import resolve
from .render import Clock, Kind, StreamRenderer, load_object, whole_object
from .request import ModelLookup, is_load_only, model_name, parse_chat, parse_generate


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
        parse = parse_chat if kind == "chat" else parse_generate
        # Every field is checked, a load request's too; the model in Ollama's
        # order; a large body (base64 images) in a worker thread.
        chat = await parse_request(request, parse, body, self._model_of(body))
        name = model_name(body)
        if is_load_only(body, kind):
            unload = keep_alive_seconds(body.get("keep_alive")) == 0
            return json_response(load_object(name, kind, unload=unload))
        async with self.api.turn(chat, caller) as turn:
            clock.mark_opened()
            return await self._respond(request, turn, chat, name, kind, clock)

    def _model_of(self, body: dict) -> ModelLookup:
        """The body's model, looked up here on the loop (the catalog is the
        loop's), handed to the parser as Ollama's order has it: its failure
        is raised when the parser asks for it, after the fields before it."""
        try:
            model = resolve(self.api, model_name(body))
        except ProxyError as exc:
            failure = exc

            def failed() -> ResolvedModel:
                raise failure
            return failed
        return lambda: model

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
        texts, body, caller = await self._read(request, "input", many=True)
        provider = self._provider(check_embed_fields(body), body, caller)
        if not texts:  # Ollama's answer to no input: the model is "loaded"
            return json_response({"model": model_name(body), "embeddings": []})
        embedded = await provider.embed_counted(texts)
        tokens = await self._used(body, texts, embedded.prompt_tokens)
        vectors = embedded.vectors
        durations = clock.durations()
        return await large_json_response(request, {
            "model": model_name(body), "embeddings": drained(vectors),
            "total_duration": durations["total_duration"],
            "load_duration": 0, "prompt_eval_count": tokens}, "embeddings", sum(map(len, vectors)))

    async def embeddings(self, request: web.Request) -> web.Response:
        texts, body, caller = await self._read(request, "prompt", many=False)
        check_embeddings_fields(body)
        provider = self._provider(None, body, caller)
        if not texts:  # an empty prompt only loads the model, as in Ollama
            return json_response({"embedding": []})
        embedded = await provider.embed_counted(texts)
        await self._used(body, texts, embedded.prompt_tokens)
        return json_response({"embedding": embedded.vectors[0]})

    async def _used(self, body: dict, texts: list[str], reported: int | None) -> int:
        """The input's tokens (the provider's count, else ours), noted for the
        request log and the key's daily quota like any other request's."""
        tokens = reported
        if tokens is None:
            tokens = sum([await self.api.count_tokens(t) for t in texts])
        self.api.note_usage(model=model_name(body), prompt_tokens=tokens)
        return tokens

    async def _read(self, request: web.Request, field: str,
                    many: bool) -> tuple[list[str], dict, Caller]:
        """The texts to embed: ``field`` as a string (or, when ``many``, a list
        of strings); absent or "" is none (Ollama's load request)."""
        caller = self.api.authenticate(request, implied=implied_key(self.api))
        body = await self.api.read_json(request)
        self.api.admit_model(caller, model_name(body))  # the key's models and quota
        value = body.get(field)
        if value is None or isinstance(value, str):
            return [value] if value else [], body, caller
        if many and isinstance(value, list) and all(isinstance(t, str) for t in value):
            return value, body, caller
        kinds = "a string or a list of strings" if many else "a string"
        raise InvalidRequest(f"{field} must be {kinds}", param=field)

    def _provider(self, dimensions: int | None, body: dict,
                  caller: Caller) -> EmbeddingProvider:
        provider = self.api.embeddings(dimensions, model_name(body), caller)
        if provider is None:
            raise NotImplementedFeature(
                "embeddings are not enabled on this server: set embeddings.provider")
        return provider
