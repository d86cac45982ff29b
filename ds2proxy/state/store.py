"""The state-store interface and its in-memory implementation.

A store holds JSON-able records by (namespace, key). ``put`` never blocks
the event loop: implementations queue the write and do it elsewhere;
``flush`` waits until queued writes are on disk. ``load`` runs once at
start, off the loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class StateStore(Protocol):
    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        """Every record of ``namespace``."""

    def put(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        """Store (or with None delete) one record, without blocking."""

    async def flush(self) -> None:
        """Wait until every earlier ``put`` is durable."""

    async def close(self) -> None:
        """Flush and release resources."""


class MemoryStore:
    """Keeps records for the process's life only (config from the environment)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, dict[str, Any]]] = {}

    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        return dict(self._data.get(namespace, {}))

    def put(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        records = self._data.setdefault(namespace, {})
        if value is None:
            records.pop(key, None)
        else:
            records[key] = value

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


def state_path_for(config_path: Path) -> Path:
    """``config.json`` → ``config.state.sqlite`` in the same folder."""
    return config_path.with_name(config_path.stem + ".state.sqlite")


def open_store(config_path: Path | None) -> StateStore:
    """An SQLite file beside a file-backed config; memory otherwise."""
    if config_path is None:
        return MemoryStore()
    from .sqlite import SQLiteStore

    return SQLiteStore(state_path_for(config_path))
