"""What ds2proxy needs from a usage store: the embedded one
(:class:`ds2proxy.state.usage.SQLiteUsage`) or the Redis one a cluster shares."""

from __future__ import annotations

from typing import Any, Protocol


class UsageStore(Protocol):
    """What ds2proxy needs from a usage store."""

    def record(self, row: dict[str, Any]) -> None: ...
    def retain(self, raw_days: int, hourly_days: int) -> None: ...
    async def flush(self) -> None: ...
    def release_memory(self) -> None:
        """Drop what the store caches in the process (a drained burst)."""
    async def requests(self, filters: dict[str, Any], limit: int, offset: int
                       ) -> tuple[list[dict[str, Any]], int]:
        """A page of rows (their ``LISTED`` fields), newest first, and the total."""
    async def request(self, row_id: int) -> dict[str, Any] | None: ...
    async def series(self, grain: str, since: float, key_name: str | None = None,
                     key_ref: str | None = None) -> list[dict[str, Any]]: ...
    async def totals(self, group: str, grain: str, since: float,
                     key_name: str | None = None, key_ref: str | None = None
                     ) -> list[dict[str, Any]]: ...
    async def adopt_refs(self, refs: dict[str, str]) -> None:
        """Rows and rollups recorded before they kept the key's ref: given the
        ref of the key ``refs`` maps their name to (once; the rest get none)."""
    async def close(self) -> None: ...
