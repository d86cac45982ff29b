"""Embedding engines behind the embeddings routes (OpenAI ``/v1/embeddings``,
Ollama ``/api/embed``); plugins reach the configured one through
``core.embeddings(dimensions)``.

The DeepSeek web chat has no embedding model, so the engine is a setting
(``embeddings.provider``). A provider is anything with ``async embed(texts)``
returning one vector per text, each of the dimension it was built for; a
real model plugs in by adding a factory to :data:`PROVIDERS`.

``deterministic`` is for testing and demos only: its vectors are stable
hashes of the text, carry no meaning, and similar texts are not close.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

_SCALE = 2.0 / 0xFFFFFFFF
DEFAULT_DIMENSIONS = 1536


class EmbeddingProvider(Protocol):
    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order, each of the provider's dimension."""
        ...


class DeterministicEmbeddings:
    """Unit vectors derived from SHAKE-256 of the text: same text, same vector."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(text) for text in texts]

    def vector(self, text: str) -> list[float]:
        raw = hashlib.shake_256(text.encode("utf-8")).digest(4 * self.dimensions)
        values = [n * _SCALE - 1.0 for n in struct.unpack(f"<{self.dimensions}I", raw)]
        norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
        return [v / norm for v in values]


ProviderFactory = Callable[[int], EmbeddingProvider]

PROVIDERS: dict[str, ProviderFactory] = {
    "deterministic": DeterministicEmbeddings,
}


def provider_for(name: str, dimensions: int) -> EmbeddingProvider | None:
    """The configured provider for vectors of ``dimensions``; None when embeddings are off."""
    factory = PROVIDERS.get(name)
    return factory(dimensions) if factory is not None else None
