"""Vectors from a provider's OpenAI-compatible ``POST /embeddings``.

Inputs go in batches of at most the provider's ``embeddings_batch_size``, one
batch after the other (a provider that caps its batch size usually caps its
rate too), and come back in input order whatever order each answer lists
them in. ``dimensions`` is passed through only when the client asked for it.
The calls go through the provider's own client
(:meth:`~ds2proxy.providers.client.ProviderClient.call_json`), so its
failures are the ones a chat meets: its 429 (with its ``Retry-After``) stays
a 429, a 5xx, an unreachable provider or a refused key of this server is a
502, a timeout a 504, and a request it rejects (a model or dimension it does
not offer) a 400 carrying its words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..embeddings import Embedded
from ..errors import ProxyError, UpstreamError


class JSONCalls(Protocol):
    """What the engine needs of a provider's client."""

    name: str

    async def call_json(self, method: str, path: str, body: dict[str, Any] | None = None
                        ) -> Any: ...


class Gate(Protocol):
    """The provider's shared bookkeeping around one embeddings request: its
    cooldown and ``max_inflight`` slots on the way in, its health after."""

    def enter(self) -> JSONCalls:
        """Take a slot and hand out the client, or raise (cooling down, busy)."""

    def leave(self, error: ProxyError | None) -> None:
        """Give the slot back and record how the request went."""


def batches(texts: Sequence[str], size: int) -> list[Sequence[str]]:
    return [texts[i:i + size] for i in range(0, len(texts), max(1, size))]


class ProviderEmbeddings:
    """An embeddings engine backed by one provider (see the module docstring)."""

    def __init__(self, gate: Gate, *, model: str, dimensions: int | None,
                 batch_size: int) -> None:
        self.gate = gate
        self.model = model
        self.dimensions = dimensions
        self.batch_size = batch_size

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return (await self.embed_counted(texts)).vectors

    async def embed_counted(self, texts: Sequence[str]) -> Embedded:
        client = self.gate.enter()
        error: ProxyError | None = None
        try:
            return await self._all(client, texts)
        except ProxyError as exc:
            error = exc
            raise
        finally:
            self.gate.leave(error)

    async def _all(self, client: JSONCalls, texts: Sequence[str]) -> Embedded:
        vectors: list[list[float]] = []
        tokens: int | None = 0
        for batch in batches(texts, self.batch_size):
            body: dict[str, Any] = {"model": self.model, "input": list(batch),
                                    "encoding_format": "float"}
            if self.dimensions is not None:
                body["dimensions"] = self.dimensions
            got, used = parse_answer(await client.call_json("POST", "/embeddings", body),
                                     len(batch), client.name)
            vectors.extend(got)
            tokens = None if tokens is None or used is None else tokens + used
        return Embedded(vectors, tokens)


def parse_answer(answer: Any, count: int, name: str) -> tuple[list[list[float]], int | None]:
    """One batch's vectors in input order, and its prompt tokens if reported."""
    bad = UpstreamError(f"provider {name} answered with something other than embeddings")
    try:
        items = sorted(answer["data"], key=lambda d: d["index"])
        vectors = [item["embedding"] for item in items]
    except (KeyError, TypeError):
        raise bad from None
    if len(vectors) != count or not all(
            isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)
            for v in vectors):
        raise bad
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    tokens = usage.get("prompt_tokens")
    return vectors, tokens if isinstance(tokens, int) and tokens >= 0 else None
