"""The in-memory store behind ``GET``/``DELETE /v1/responses/{id}`` and
``previous_response_id`` (with ``state.backend: redis`` the core's shared
store, of the same asynchronous face, takes its place).

Entries are scoped to the caller's credential identity, so one caller can
never read or continue another's responses (a foreign id looks exactly like
a missing one). The time-to-live is read on every access, so a hot-reloaded
``responses.store_ttl_seconds`` applies to entries already stored. Memory
stays bounded: expired entries are dropped whenever the store is touched,
and past ``max_entries`` the oldest entries go first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]
DEFAULT_MAX_ENTRIES = 1024


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A finished response and the input items it answered (for continuation)."""

    owner: str
    response: dict[str, Any]
    input_items: list[Any]
    stored_at: float

    @property
    def history(self) -> list[Any]:
        """What a follow-up request continues from: its input, then its output."""
        return [*self.input_items, *self.response.get("output", [])]


class ResponseStore:
    def __init__(self, ttl: Callable[[], float], *, clock: Clock = time.monotonic,
                 max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()

    def __len__(self) -> int:
        self._evict_expired()
        return len(self._entries)

    def put(self, owner: str, response: dict[str, Any], input_items: list[Any]) -> None:
        self._evict_expired()
        self._entries[response["id"]] = StoredResponse(owner, response, input_items,
                                                       self._clock())
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def get(self, owner: str, response_id: str) -> StoredResponse | None:
        """The entry when it exists, has not expired and belongs to ``owner``."""
        self._evict_expired()
        entry = self._entries.get(response_id)
        return entry if entry is not None and entry.owner == owner else None

    def delete(self, owner: str, response_id: str) -> bool:
        """Remove ``owner``'s entry; False when there is none (or not theirs)."""
        if self.get(owner, response_id) is None:
            return False
        del self._entries[response_id]
        return True

    # The asynchronous face the routes use (a shared store's calls are I/O).

    async def keep(self, owner: str, response: dict[str, Any], input_items: list[Any]) -> None:
        self.put(owner, response, input_items)

    async def fetch(self, owner: str, response_id: str) -> StoredResponse | None:
        return self.get(owner, response_id)

    async def drop(self, owner: str, response_id: str) -> bool:
        return self.delete(owner, response_id)

    def _evict_expired(self) -> None:
        # Insertion order is storage order, so expired entries sit at the front.
        limit = self._clock() - self._ttl()
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.stored_at > limit:
                return
            self._entries.popitem(last=False)
