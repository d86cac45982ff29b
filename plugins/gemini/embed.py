"""``:embedContent`` and ``:batchEmbedContents``, answered by the configured
embeddings engine (501 when there is none), as the OpenAI and Ollama
embeddings routes are.

google-genai's ``embed_content`` calls ``batchEmbedContents`` with one
request per text; hand-written clients call ``embedContent``. Only the
``parts[].text`` of a content are embedded, joined (Google counts only
those). The model is the URL's, passed to the engine by that name; a
request in a batch that names another model is a 400, as Google answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ds2proxy.dialects import json_response
from ds2proxy.dialects.large_json import drained, large_json_response
from ds2proxy.dialects.validate import Bounds, choice, integer, mapping, protobuf_number, string
from ds2proxy.plugin_api import Caller, InvalidRequest, NotImplementedFeature, PluginAPI

from .fields import pick

MAX_BATCH = 100  # Google: "at most 100 requests can be in one batch"
MAX_DIMENSIONS = 8192
TASK_TYPES = ("TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT",
              "SEMANTIC_SIMILARITY", "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING",
              "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY")


@dataclass(frozen=True, slots=True)
class EmbedItem:
    """One text to embed and the vector size asked for (None: the engine's)."""

    text: str
    dimensions: int | None


def resource_name(model: str) -> str:
    """The model without Google's ``models/`` prefix."""
    return model.strip().removeprefix("models/")


def parse_item(body: Any, model: str, where: str) -> EmbedItem:
    """One ``EmbedContentRequest``; ``where`` prefixes the field names in errors."""
    request = mapping(body, where.rstrip(".") or "body") or {}
    named = pick(request, "model")
    if named is not None and (not isinstance(named, str) or resource_name(named) != model):
        raise InvalidRequest(f"'{where}model' must name the model of the URL (models/{model})",
                             param=f"{where}model")
    choice(pick(request, "taskType"), f"{where}taskType", TASK_TYPES)
    string(pick(request, "title"), f"{where}title")
    # Protocol Buffers' JSON: 8, 8.0 and "8" alike; 0 is unset (the engine's size).
    size = protobuf_number(pick(request, "outputDimensionality"))
    dimensions = integer(size or None, f"{where}outputDimensionality",
                         Bounds(1, MAX_DIMENSIONS), integral_float=True)
    return EmbedItem(_text(request.get("content"), f"{where}content"), dimensions)


def _text(content: Any, field: str) -> str:
    """The joined text parts of a content; a content with none is a 400."""
    parts = mapping(content, field) and content.get("parts")
    if isinstance(parts, dict):
        parts = [parts]
    if not isinstance(parts, list):
        raise InvalidRequest(f"'{field}.parts' must be a list of parts", param=f"{field}.parts")
    texts = [part.get("text") for part in parts if isinstance(part, dict)]
    if any(t is not None and not isinstance(t, str) for t in texts):
        raise InvalidRequest(f"'{field}.parts[].text' must be a string", param=f"{field}.parts")
    text = "\n".join(t for t in texts if t)
    if not text.strip():
        raise InvalidRequest(f"'{field}' holds no text to embed", param=f"{field}.parts")
    return text


def parse_batch(body: dict, model: str) -> list[EmbedItem]:
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise InvalidRequest("'requests' must be a non-empty list", param="requests")
    if len(requests) > MAX_BATCH:
        raise InvalidRequest(f"at most {MAX_BATCH} requests can be in one batch",
                             param="requests")
    return [parse_item(item, model, f"requests[{n}].") for n, item in enumerate(requests)]


class EmbedRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    async def embed(self, request: web.Request, model: str) -> web.StreamResponse:
        caller, body, name = await self._read(request, model)
        (vector,) = await self._vectors([parse_item(body, name, "")], name, caller)
        return json_response({"embedding": {"values": vector}})

    async def batch(self, request: web.Request, model: str) -> web.StreamResponse:
        caller, body, name = await self._read(request, model)
        vectors = await self._vectors(parse_batch(body, name), name, caller)
        return await large_json_response(
            request, {"embeddings": ({"values": v} for v in drained(vectors))}, "embeddings",
            sum(map(len, vectors)))

    async def _read(self, request: web.Request, model: str) -> tuple[Caller, dict, str]:
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        name = resource_name(model)
        if not name:
            raise InvalidRequest("the URL names no model", param="model")
        self.api.admit_model(caller, name)  # the key's models and quota
        return caller, body, name

    async def _vectors(self, items: list[EmbedItem], model: str, caller: Caller
                       ) -> list[list[float]]:
        """The vectors of ``items`` in order: one engine call per vector size
        asked for; the input's tokens noted for the log and the key's quota."""
        vectors: list[list[float]] = [[] for _ in items]
        tokens: int | None = 0
        for size in dict.fromkeys(item.dimensions for item in items):
            engine = self.api.embeddings(size, model, caller)
            if engine is None:
                raise NotImplementedFeature(
                    "embeddings are not enabled on this server: set embeddings.provider")
            places = [n for n, item in enumerate(items) if item.dimensions == size]
            embedded = await engine.embed_counted([items[n].text for n in places])
            for n, vector in zip(places, embedded.vectors):
                vectors[n] = vector
            if tokens is not None and embedded.prompt_tokens is not None:
                tokens += embedded.prompt_tokens
            else:
                tokens = None
        if tokens is None:
            tokens = sum([await self.api.count_tokens(item.text) for item in items])
        self.api.note_usage(model=model, prompt_tokens=tokens)
        return vectors
