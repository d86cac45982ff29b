"""``POST /v1/embeddings``: the request's shape, answered by the configured
engine (a provider's ``/embeddings``, or the testing hashes). Usage is the
provider's count when it reports one, else counted here.

Token-array inputs cannot be decoded (the client's tokenizer is not
DeepSeek's), so each array is embedded as the text of its numbers and counted
as one token per element.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import InvalidRequest, NotImplementedFeature, PluginAPI
from ds2proxy.dialects.large_json import drained, large_json_response
from ds2proxy.dialects.validate import Bounds, choice, integer, string

MAX_DIMENSIONS = 8192
MAX_INPUTS = 2048
ENCODINGS = ("float", "base64")


@dataclass(frozen=True, slots=True)
class EmbeddingInput:
    """One input as the provider sees it, and its token count for usage
    (None for a text: counted by :func:`usage_tokens`, off the loop if long)."""

    text: str
    tokens: int | None


class EmbeddingRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    async def create(self, request: web.Request) -> web.Response:
        caller = self.api.authenticate(request)
        body = await self.api.read_json(request)
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest("'model' is required", param="model")
        self.api.admit_model(caller, model)
        inputs = parse_inputs(body.get("input"))
        dimensions = _dimensions(body.get("dimensions"))
        encoding = choice(body.get("encoding_format"), "encoding_format", ENCODINGS) or "float"
        string(body.get("user"), "user")
        provider = self.api.embeddings(dimensions, model, caller)
        if provider is None:
            raise NotImplementedFeature(
                "embeddings are not enabled on this server: set embeddings.provider")
        embedded = await provider.embed_counted([item.text for item in inputs])
        vectors = embedded.vectors
        tokens = embedded.prompt_tokens
        if tokens is None:
            tokens = await usage_tokens(inputs, self.api.count_tokens)
        self.api.note_usage(model=model, prompt_tokens=tokens)
        # Encoded (base64) and serialised in a worker thread when large.
        return await large_json_response(request, {
            "object": "list",
            "data": ({"object": "embedding", "index": i, "embedding": _encode(v, encoding)}
                     for i, v in enumerate(drained(vectors))),
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }, "data", sum(map(len, vectors)))


async def usage_tokens(inputs: list[EmbeddingInput],
                       count: Callable[[str], Awaitable[int]]) -> int:
    """Token arrays count their elements, texts their DeepSeek V4 tokens (``count``)."""
    return sum([item.tokens if item.tokens is not None else await count(item.text)
                for item in inputs])


def parse_inputs(value: Any) -> list[EmbeddingInput]:
    """A string, a list of strings, a token array or a list of token arrays."""
    if isinstance(value, str) or _is_tokens(value):
        value = [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("'input' must be a non-empty string, list of strings or "
                             "token arrays", param="input")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'input' may hold at most {MAX_INPUTS} items", param="input")
    return [_one_input(item, i) for i, item in enumerate(value)]


def _one_input(item: Any, i: int) -> EmbeddingInput:
    if isinstance(item, str) and item:
        return EmbeddingInput(item, None)
    if _is_tokens(item) and item:
        return EmbeddingInput(" ".join(map(str, item)), len(item))
    raise InvalidRequest(f"input[{i}] must be a non-empty string or token array",
                         param="input")


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)


def _dimensions(value: Any) -> int | None:
    """The size asked for; None leaves it to the engine (a provider's model
    has its own, the testing engine uses 1536)."""
    return integer(value, "dimensions", Bounds(1, MAX_DIMENSIONS))


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    """``base64`` is the little-endian float32 array the official clients decode."""
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
