"""``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``,
``GET /v1/responses/{id}/input_items``, ``POST /v1/responses/{id}/cancel`` and
``POST /v1/responses/input_tokens``.

A stream opens with ``response.created`` only once the turn has produced its
first event, so a turn that fails before any output still answers with a
plain HTTP error (a 429 keeps its ``Retry-After``); any later failure ends
the stream with ``response.failed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from ds2proxy.dialects import json_response
from ds2proxy.dialects.sampling import responses_sampling
from ds2proxy.dialects.validate import string
from ds2proxy.plugin_api import (
    InvalidRequest,
    NotFound,
    PluginAPI,
    ProxyError,
    ResolvedModel,
    StoredEntry,
    StoredResponses,
    Turn,
    TurnEvent,
)

from .responses_builder import ResponseBuilder, ResponseHeader
from .responses_input import conversation_items, references, resolve_references
from .responses_input_items import items_by_id, listed_items, page, response_holding
from .responses_items import Event, new_id
from .responses_request import ResponsesRequest, parse_responses_request
from .responses_store import ResponseStore

# Stored responses one request's item_reference items may reach (the store
# keeps about as many).
MAX_REFERENCED = 1024
ECHOED = ("instructions", "max_output_tokens", "previous_response_id", "temperature", "top_p",
          "prompt_cache_key", "service_tier", "user")


class ResponsesRoutes:
    def __init__(self, api: PluginAPI, store: StoredResponses | None = None) -> None:
        self.api = api
        if store is None:  # the instances' shared store, else one in this process
            store = api.shared_responses or ResponseStore(lambda: api.responses_ttl_seconds)
        self.store = store

    async def create(self, request: web.Request) -> web.StreamResponse:
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        model = self.api.resolve_model(_checked(body).get("model"), family="openai")
        parsed = await self._parse(caller.identity, body, model)
        async with self.api.turn(parsed.chat, caller) as turn:
            builder = ResponseBuilder(ResponseHeader(
                new_id("resp"), turn.created, model.requested, echo_fields(body, parsed),
                parsed.namespaces))
            if parsed.chat.stream:
                return await self._stream(request, turn, builder, parsed, caller.identity)
            result = await turn.collect()
        response = builder.replay(result)
        await self._keep(caller.identity, parsed, response)
        return json_response(response)

    async def input_tokens(self, request: web.Request) -> web.Response:
        """The ``input_tokens`` a response to this body would report: its
        stored history, instructions, tools and uploads counted as a turn
        counts them. ``model`` is optional here, as in the official API."""
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        name = _checked(body).get("model")
        model = self.api.resolve_model(self.api.default_model if name is None else name,
                                       family="openai")
        parsed = await self._parse(caller.identity, body, model)
        self.api.admit_model(caller, model.requested, model.native)
        return json_response({"object": "response.input_tokens",
                              "input_tokens": await self.api.prompt_tokens(parsed.chat)})

    async def _parse(self, owner: str, body: dict, model: ResolvedModel) -> ResponsesRequest:
        history = await self._history(owner, body)
        items = [*history, *conversation_items(body)]
        stored = await self._referenced(owner, items)
        return parse_responses_request(body, model,
                                       resolve_references(items, len(history), stored))

    async def _referenced(self, owner: str, items: list[Any]) -> dict[str, Any]:
        """The caller's stored items that ``item_reference`` items name, found
        through the response each id names (ids this server made say which);
        a client that stores its answers (the AI SDK's default) sends each past
        answer as such a reference, with no previous_response_id. The newest
        reference is looked up first: its response's stored input holds the
        earlier ones resolved, so a long conversation costs one read, not one
        per past answer."""
        found: dict[str, Any] = {}
        fetched: set[str] = set()
        for ident in reversed(references(items)):
            holder = response_holding(ident)
            if ident in found or holder is None or holder in fetched \
                    or len(fetched) == MAX_REFERENCED:
                continue
            fetched.add(holder)
            entry = await self.store.fetch(owner, holder)
            if entry is not None:
                found.update(items_by_id(holder, entry.input_items,
                                         entry.response.get("output", [])))
        return found

    async def get(self, request: web.Request) -> web.Response:
        """The stored response. ``stream=true`` asks for its events again, as
        the API resumes a background stream; they are not kept here, so it is
        a 400 naming ``stream`` (a JSON answer broke the SDK's stream reader)."""
        if request.query.get("stream", "").strip().lower() in ("true", "1"):
            raise InvalidRequest("'stream' is not supported here: a stored response's events "
                                 "are not kept; retrieve it without stream", param="stream",
                                 code="unsupported_parameter")
        return json_response((await self._stored(request)).response)

    async def cancel(self, request: web.Request) -> web.Response:
        """``POST /v1/responses/{id}/cancel``. Only a background response can be
        cancelled, as in the API; here one is finished when it is created, so
        cancelling it changes nothing and answers it as it is."""
        entry = await self._stored(request)
        if entry.response.get("background") is not True:
            raise InvalidRequest("Only responses created with background=true can be "
                                 "cancelled.", param="response_id")
        return json_response(entry.response)

    async def input_items(self, request: web.Request) -> web.Response:
        """The items the stored response was generated from, a cursor page."""
        entry = await self._stored(request)
        return json_response(page(listed_items(request.match_info["response_id"],
                                               entry.input_items), request.query))

    async def _stored(self, request: web.Request) -> StoredEntry:
        """The caller's stored response the path names; a 404 when there is none."""
        caller = self.api.authenticate(request)
        response_id = request.match_info["response_id"]
        entry = await self.store.fetch(caller.identity, response_id)
        if entry is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return entry

    async def delete(self, request: web.Request) -> web.Response:
        caller = self.api.authenticate(request)
        response_id = request.match_info["response_id"]
        if not await self.store.drop(caller.identity, response_id):
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return json_response({"id": response_id, "object": "response", "deleted": True})

    async def _stream(self, request: web.Request, turn: Turn, builder: ResponseBuilder,
                      parsed: ResponsesRequest, owner: str) -> web.StreamResponse:
        renderer = ResponsesStreamRenderer(
            builder, lambda response: self._keep(owner, parsed, response))
        return await self.api.relay(self.api.sse(request), KeptAtEnd(turn, renderer), renderer)

    async def _history(self, owner: str, body: dict) -> list[Any]:
        """The stored conversation ``previous_response_id`` continues, if any."""
        previous = string(body.get("previous_response_id"), "previous_response_id")
        if previous is None:
            return []
        entry = await self.store.fetch(owner, previous)
        if entry is None:
            raise InvalidRequest(f"Previous response with id '{previous[:100]}' not found.",
                                 param="previous_response_id",
                                 code="previous_response_not_found")
        return entry.history

    async def _keep(self, owner: str, parsed: ResponsesRequest, response: dict) -> None:
        # A background response is kept even with store false, as the API keeps
        # it for a while: its client polls GET /v1/responses/{id} for the result.
        if parsed.store or parsed.background:
            await self.store.keep(owner, response, parsed.items)


class ResponsesStreamRenderer:
    """Builder events as named SSE frames; the finished response is kept
    (``keep``, by :meth:`settle`) before the stream ends, so a follow-up can
    continue it, on any instance."""

    def __init__(self, builder: ResponseBuilder,
                 keep: Callable[[dict], Awaitable[None]]) -> None:
        self.builder = builder
        self.keep = keep
        self._finished: list[Event] | None = None

    async def settle(self) -> None:
        """The turn is over: finish the response and store it (its closing
        events are numbered when sent, so a failure to store ends the stream
        with the next sequence_number, not after a gap)."""
        self._finished = self.builder.closing()
        await self.keep(self.builder.response())

    def frames(self, event: TurnEvent) -> list[tuple[str, dict]]:
        return _named(self.builder.feed(event))

    def error(self, error: ProxyError) -> list[Any]:
        return [*_named(self.builder.fail(error)), "[DONE]"]

    def end(self) -> list[Any]:
        payloads = (self.builder.finish() if self._finished is None
                    else self.builder.number(self._finished))
        return [*_named(payloads), "[DONE]"]


class KeptAtEnd:
    """The turn's batches, then the renderer's :meth:`settle` (an error while
    storing ends the stream with ``response.failed``, not a silent loss)."""

    def __init__(self, turn: Turn, renderer: ResponsesStreamRenderer) -> None:
        self.turn = turn
        self.renderer = renderer

    async def batches(self) -> AsyncIterator[list[TurnEvent]]:
        async for batch in self.turn.batches():
            yield batch
        await self.renderer.settle()


def _checked(body: dict) -> dict:
    """Every field checked before the history is looked up. A conversation
    or a stored prompt names an object only the official API keeps: no such
    object exists here, so it is a 404, never silently answered without it."""
    responses_sampling(body)
    for field, what in (("conversation", "Conversation"), ("prompt", "Prompt")):
        named = body.get(field)
        if named is not None:
            ident = named.get("id") if isinstance(named, dict) else named
            raise NotFound(f"{what} with id '{str(ident)[:100]}' not found.", param=field)
    return body


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
        "background": parsed.background,
        "text": {**text, "format": text.get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") if isinstance(body.get("tools"), list) else [],
        "truncation": body.get("truncation") or "disabled",
    }
