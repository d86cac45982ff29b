"""Stored ``/v1/responses`` results in Redis, so any instance can read,
continue (``previous_response_id``) or delete a response another created.

One key per response, expiring with ``responses.store_ttl_seconds`` as it
was when stored; the TTL read on each access still applies, so a shortened
TTL hides older entries at once. An entry's age is what its key's TTL has
run down on Redis's clock, so instances whose clocks disagree agree on it.
The owner is the caller's non-secret identity hash: a foreign id looks
exactly like a missing one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from .redis_link import RedisLink


class StoredEntry:
    """A stored response and the input items it answered (for continuation)."""

    __slots__ = ("owner", "response", "input_items", "stored_at")

    def __init__(self, owner: str, response: dict[str, Any], input_items: list[Any],
                 stored_at: float) -> None:
        self.owner, self.response = owner, response
        self.input_items, self.stored_at = input_items, stored_at

    @property
    def history(self) -> list[Any]:
        """What a follow-up continues from: its input, then its output."""
        return [*self.input_items, *self.response.get("output", [])]


class RedisResponses:
    def __init__(self, link: RedisLink, ttl: Callable[[], float]) -> None:
        self.link = link
        self._ttl = ttl

    def _key(self, response_id: str) -> str:
        return self.link.key("responses", response_id)

    async def keep(self, owner: str, response: dict[str, Any], input_items: list[Any]) -> None:
        ttl = max(1, int(self._ttl()))
        doc = orjson.dumps({"owner": owner, "response": response, "input_items": input_items,
                            "stored_at": time.time(), "ttl": ttl})
        key = self._key(response["id"])
        await self.link.call(lambda: self.link.client.set(key, doc, ex=ttl))

    async def fetch(self, owner: str, response_id: str) -> StoredEntry | None:
        key = self._key(response_id)

        async def read() -> list[Any]:
            async with self.link.client.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                return await pipe.execute()

        raw, left_ms = await self.link.call(read)
        if raw is None:
            return None
        doc = orjson.loads(raw)
        if doc.get("owner") != owner or _age(doc, left_ms) >= self._ttl():
            return None
        return StoredEntry(owner, doc["response"], doc["input_items"], doc["stored_at"])

    async def drop(self, owner: str, response_id: str) -> bool:
        """Delete the caller's own entry; False when there is none to delete."""
        if await self.fetch(owner, response_id) is None:
            return False
        await self.link.call(lambda: self.link.client.delete(self._key(response_id)))
        return True


def _age(doc: dict[str, Any], left_ms: int) -> float:
    """Seconds since ``doc`` was stored, on Redis's clock (what its key's TTL
    has run down): instances whose clocks disagree agree on it. An entry
    stored without its TTL falls back to the wall clock."""
    if "ttl" in doc and left_ms >= 0:
        return doc["ttl"] - left_ms / 1000
    return time.time() - doc["stored_at"]
