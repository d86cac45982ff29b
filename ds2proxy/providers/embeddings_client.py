"""Vectors from a provider's OpenAI-compatible ``POST /embeddings``.

Inputs go in batches of at most the provider's ``embeddings_batch_size``, one
batch after the other (a provider that caps its batch size usually caps its
rate too), and come back in input order whatever order each answer lists
them in. ``dimensions`` is passed through only when the client asked for it.
The provider's failures become the errors a client of any family
understands: its 429 (with its ``Retry-After``) stays a 429, a 5xx or a
refused credential of this server is a 502, a timeout a 504, and a request
it rejects (a model or dimension it does not offer) a 400 carrying its words
with every secret scrubbed out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import orjson

from ..embeddings import Embedded
from ..errors import (InvalidRequest, ProxyError, UpstreamAuthError, UpstreamError,
                      UpstreamRateLimited, UpstreamTimeout)

MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class EmbeddingTarget:
    """What the client needs of a configured provider."""

    name: str
    base_url: str
    api_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float = 60.0
    batch_size: int = 64

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.api_key and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def scrub(self, text: str) -> str:
        for secret in sorted({self.api_key, *self.headers.values()}, key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
        return text


def batches(texts: Sequence[str], size: int) -> list[Sequence[str]]:
    return [texts[i:i + size] for i in range(0, len(texts), max(1, size))]


def retry_after(value: str | None, now: float | None = None) -> int:
    """Whole seconds from a ``Retry-After`` header (seconds or an HTTP date),
    at least 1 and at most a day; 1 when it is missing or unreadable."""
    text = (value or "").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError, IndexError):
            return 1
        seconds = when - (time.time() if now is None else now)
    return max(1, min(math.ceil(seconds), 86400)) if math.isfinite(seconds) else 1


class Gate(Protocol):
    """The provider's shared bookkeeping around one embeddings request: its
    cooldown and ``max_inflight`` slots on the way in, its health after."""

    def enter(self) -> None:
        """Take a slot, or raise (cooling down, every slot taken)."""

    def leave(self, error: ProxyError | None) -> None:
        """Give the slot back and record how the request went."""


class ProviderEmbeddings:
    """An embeddings engine backed by one provider (see the module docstring)."""

    def __init__(self, http: aiohttp.ClientSession, target: EmbeddingTarget, model: str,
                 dimensions: int | None, gate: Gate | None = None) -> None:
        self.http = http
        self.target = target
        self.model = model
        self.dimensions = dimensions
        self.gate = gate

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return (await self.embed_counted(texts)).vectors

    async def embed_counted(self, texts: Sequence[str]) -> Embedded:
        if self.gate is None:
            return await self._all(texts)
        self.gate.enter()
        error: ProxyError | None = None
        try:
            return await self._all(texts)
        except ProxyError as exc:
            error = exc
            raise
        finally:
            self.gate.leave(error)

    async def _all(self, texts: Sequence[str]) -> Embedded:
        vectors: list[list[float]] = []
        tokens: int | None = 0
        for batch in batches(texts, self.target.batch_size):
            got, used = await self._one_batch(batch)
            vectors.extend(got)
            tokens = None if tokens is None or used is None else tokens + used
        return Embedded(vectors, tokens)

    async def _one_batch(self, batch: Sequence[str]) -> tuple[list[list[float]], int | None]:
        body: dict[str, Any] = {"model": self.model, "input": list(batch),
                                "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        url = self.target.base_url.rstrip("/") + "/embeddings"
        try:
            async with self.http.post(
                    url, data=orjson.dumps(body), allow_redirects=False,
                    headers={**self.target.request_headers(),
                             "Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=self.target.timeout_seconds)) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    raise self._failure(resp.status, raw, resp.headers.get("Retry-After"))
        except TimeoutError:
            raise UpstreamTimeout(f"the embeddings provider {self.target.name} timed out",
                                  detail=url) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"the embeddings provider {self.target.name} could not be "
                                "reached", detail=f"{type(exc).__name__}") from None
        return self._parse(raw, len(batch))

    def _failure(self, status: int, raw: bytes, after: str | None) -> ProxyError:
        reason = self._reason(raw)
        name = self.target.name
        detail = f"{name}: HTTP {status}: {reason}"
        if status == 429:
            return UpstreamRateLimited(f"the embeddings provider {name} is rate limited; "
                                       "try again later", retry_after=retry_after(after),
                                       detail=detail)
        if status in (401, 403):
            return UpstreamAuthError(f"the embeddings provider {name} refused this server's "
                                     "credentials", detail=detail)
        if 400 <= status < 500:
            return InvalidRequest(f"the embeddings provider {name} refused the request: "
                                  f"{reason}")
        return UpstreamError(f"the embeddings provider {name} failed (HTTP {status})",
                             detail=detail)

    def _reason(self, raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace")
        try:
            parsed = orjson.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            error = parsed.get("error")
            found = error.get("message") if isinstance(error, dict) else error
            text = found if isinstance(found, str) else text
        return self.target.scrub(text)[:MAX_REASON]

    def _parse(self, raw: bytes, count: int) -> tuple[list[list[float]], int | None]:
        """The batch's vectors in input order, and its prompt tokens if reported."""
        bad = UpstreamError(f"the embeddings provider {self.target.name} answered with "
                            "something other than embeddings")
        try:
            answer = orjson.loads(raw)
            items = sorted(answer["data"], key=lambda d: d["index"])
            vectors = [item["embedding"] for item in items]
        except (ValueError, KeyError, TypeError):
            raise bad from None
        if len(vectors) != count or not all(
                isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v)
                for v in vectors):
            raise bad
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        tokens = usage.get("prompt_tokens")
        return vectors, tokens if isinstance(tokens, int) and tokens >= 0 else None


def target_of(provider: Any) -> EmbeddingTarget:
    """The embeddings view of a configured provider (``config.providers`` item)."""
    return EmbeddingTarget(name=provider.name, base_url=provider.base_url,
                           api_key=provider.api_key, headers=dict(provider.headers),
                           timeout_seconds=provider.timeout_seconds,
                           batch_size=provider.embeddings_batch_size)
