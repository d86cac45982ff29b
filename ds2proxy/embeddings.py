"""Embedding engines behind the embeddings routes (OpenAI ``/v1/embeddings``,
Ollama ``/api/embed`` and ``/api/embeddings``); plugins reach the configured
one through ``core.embeddings(dimensions, model)``.

The DeepSeek web chat has no embedding model, so the engine is a setting,
``embeddings.provider``: the name of a configured upstream provider (its
``/embeddings`` endpoint serves the vectors, see
:mod:`ds2proxy.providers.embeddings_client`), or ``testing``.

``testing`` is for tests and demos only: its vectors are stable hashes of
the text, carry no meaning, and similar texts are not close. It was once
called ``deterministic``; that name is refused with a pointer to the new one
(see :mod:`ds2proxy.embeddings_settings`), so nobody gets hash vectors by
accident.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

_SCALE = 2.0 / 0xFFFFFFFF
DEFAULT_DIMENSIONS = 1536
TESTING = "testing"


@dataclass(frozen=True, slots=True)
class Embedded:
    """Vectors in input order, and the prompt tokens the engine reported
    (None: it reports none, the route counts them itself)."""

    vectors: list[list[float]]
    prompt_tokens: int | None = None


class EmbeddingProvider(Protocol):
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...

    async def embed_counted(self, texts: Sequence[str]) -> Embedded:
        """The vectors and, when the engine knows it, the tokens they cost."""
        ...


class HeldEmbeddings:
    """An engine whose every call holds one of the caller's key's concurrent
    slots, as a turn does: embeddings count against ``limits.concurrent``."""

    def __init__(self, inner: EmbeddingProvider,
                 hold: Callable[[], AbstractAsyncContextManager[None]]) -> None:
        self._inner = inner
        self._hold = hold

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        async with self._hold():
            return await self._inner.embed(texts)

    async def embed_counted(self, texts: Sequence[str]) -> Embedded:
        async with self._hold():
            return await self._inner.embed_counted(texts)


class DeterministicEmbeddings:
    """Unit vectors derived from SHAKE-256 of the text: same text, same vector."""

    def __init__(self, dimensions: int | None = None) -> None:
        self.dimensions = dimensions or DEFAULT_DIMENSIONS

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """In a worker thread: 2048 inputs of 8192 dimensions take seconds of
        hashing and arithmetic, which on the event loop held every request."""
        return await asyncio.to_thread(self.vectors, list(texts))

    def vectors(self, texts: list[str]) -> list[list[float]]:
        return [self.vector(text) for text in texts]

    async def embed_counted(self, texts: Sequence[str]) -> Embedded:
        return Embedded(await self.embed(texts))

    def vector(self, text: str) -> list[float]:
        raw = hashlib.shake_256(text.encode("utf-8")).digest(4 * self.dimensions)
        values = [n * _SCALE - 1.0 for n in struct.unpack(f"<{self.dimensions}I", raw)]
        norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
        return [v / norm for v in values]


def provider_for(name: str, dimensions: int | None) -> EmbeddingProvider | None:
    """The built-in engine ``name`` (only ``testing``); None for any other name."""
    return DeterministicEmbeddings(dimensions) if name == TESTING else None
