"""``POST /v1/responses`` and ``GET /v1/responses/{id}``.

A stream opens with ``response.created`` only once the turn has produced its
first event, so a turn that fails before any output still answers with a
plain HTTP error (a 429 keeps its ``Retry-After``); any later failure ends
the stream with ``response.failed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import (
    InvalidRequest,
    NotFound,
    PluginAPI,
    ProxyError,
    Turn,
    TurnEvent,
)
from ds2proxy.dialects import json_response
from ds2proxy.dialects.sampling import responses_sampling
from ds2proxy.dialects.validate import string

from .responses_builder import ResponseBuilder, ResponseHeader
from .responses_input import conversation_items
from .responses_items import new_id
from .responses_request import ResponsesRequest, parse_responses_request
from .responses_store import ResponseStore

ECHOED = ("instructions", "max_output_tokens", "previous_response_id", "temperature", "top_p",
          "prompt_cache_key", "service_tier", "user")


class ResponsesRoutes:
    def __init__(self, api: PluginAPI, store: ResponseStore | None = None) -> None:
        self.api = api
        if store is None:
            store = ResponseStore(lambda: api.responses_ttl_seconds)
        self.store = store

    async def create(self, request: web.Request) -> web.StreamResponse:
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        responses_sampling(body)    # every field checked before history is looked up
        model = self.api.resolve_model(body.get("model"), family="openai")
        items = [*self._history(caller.identity, body), *conversation_items(body)]
        parsed = parse_responses_request(body, model, items)
        async with self.api.turn(parsed.chat, caller) as turn:
            builder = ResponseBuilder(ResponseHeader(
                new_id("resp"), turn.created, model.requested, echo_fields(body, parsed),
                parsed.namespaces))
            if parsed.chat.stream:
                return await self._stream(request, turn, builder, parsed, caller.identity)
            result = await turn.collect()
        response = builder.replay(result)
        self._keep(caller.identity, parsed, response)
        return json_response(response)

    async def get(self, request: web.Request) -> web.Response:
        caller = self.api.authenticate(request)
        response_id = request.match_info["response_id"]
        entry = self.store.get(caller.identity, response_id)
        if entry is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return json_response(entry.response)

    async def _stream(self, request: web.Request, turn: Turn, builder: ResponseBuilder,
                      parsed: ResponsesRequest, owner: str) -> web.StreamResponse:
        renderer = ResponsesStreamRenderer(
            builder, lambda: self._keep(owner, parsed, builder.response()))
        return await self.api.relay(self.api.sse(request), turn, renderer)

    def _history(self, owner: str, body: dict) -> list[Any]:
        """The stored conversation ``previous_response_id`` continues, if any."""
        previous = string(body.get("previous_response_id"), "previous_response_id")
        if previous is None:
            return []
        entry = self.store.get(owner, previous)
        if entry is None:
            raise InvalidRequest(f"Previous response with id '{previous}' not found.",
                                 param="previous_response_id",
                                 code="previous_response_not_found")
        return entry.history

    def _keep(self, owner: str, parsed: ResponsesRequest, response: dict) -> None:
        if parsed.store:
            self.store.put(owner, response, parsed.items)


class ResponsesStreamRenderer:
    """Builder events as named SSE frames; the finished response is kept
    (``on_end``) before the stream ends, so a follow-up can continue it."""

    def __init__(self, builder: ResponseBuilder, on_end: Callable[[], None]) -> None:
        self.builder = builder
        self.on_end = on_end

    def frames(self, event: TurnEvent) -> list[tuple[str, dict]]:
        return _named(self.builder.feed(event))

    def error(self, error: ProxyError) -> list[Any]:
        return [*_named(self.builder.fail(error)), "[DONE]"]

    def end(self) -> list[Any]:
        frames = _named(self.builder.finish())
        self.on_end()
        return [*frames, "[DONE]"]


def _named(payloads: list[dict]) -> list[tuple[str, dict]]:
    return [(payload["type"], payload) for payload in payloads]


def echo_fields(body: dict, parsed: ResponsesRequest) -> dict[str, Any]:
    """Request settings the response object repeats, as the official API does
    (every echoed field was validated by ``responses_sampling``)."""
    chat = parsed.chat
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    text = body.get("text") if isinstance(body.get("text"), dict) else {}
    return {
        **{key: body.get(key) for key in ECHOED},
        "metadata": metadata,
        "parallel_tool_calls": chat.parallel_tool_calls,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": parsed.store,
        "text": {**text, "format": text.get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") if isinstance(body.get("tools"), list) else [],
        "truncation": body.get("truncation") or "disabled",
    }
