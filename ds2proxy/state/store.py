"""The state-store interface and its in-memory implementation.

A store holds JSON-able records by (namespace, key). ``put`` never blocks
the event loop: implementations queue the write and do it elsewhere;
``flush`` waits until queued writes are on disk. ``load`` runs once at
start, off the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

# Told of a record another instance changed: (key, value or None when deleted).
RecordListener = Callable[[str, dict[str, Any] | None], None]


class StateStore(Protocol):
    async def load(self, namespace: str) -> dict[str, dict[str, Any]]:
        """Every record of ``namespace``."""

    def put(self, namespace: str, key: str, value: dict[str, Any] | None) -> None:
        """Store (or with None delete) one record, without blocking."""

    def watch(self, namespace: str, listener: RecordListener) -> None:
        """Call ``listener`` for each change another instance makes (a shared
        store only; the embedded one has no other writer)."""

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

    def watch(self, namespace: str, listener: RecordListener) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


def state_path_for(config_path: Path) -> Path:
    """``config.json`` → ``config.state.sqlite`` in the same folder."""
    return config_path.with_name(config_path.stem + ".state.sqlite")


def legacy_usage_path(config_path: Path) -> Path:
    """Where usage lived before it joined the state file: ``config.usage.db``."""
    return config_path.with_name(config_path.stem + ".usage.db")


def state_file(config_path: Path | None, usage_db_path: str = "") -> Path | None:
    """The one embedded state file: ``usage.db_path`` when set (relative to
    the config's folder), else beside the config; None keeps state in memory."""
    if usage_db_path:
        path = Path(usage_db_path).expanduser()
        if not path.is_absolute() and config_path is not None:
            path = config_path.parent / path
        return path
    return None if config_path is None else state_path_for(config_path)


def open_store(path: Path | None) -> StateStore:
    """The records of the state file ``path``; memory when there is none."""
    if path is None:
        return MemoryStore()
    from .sqlite import SQLiteStore

    return SQLiteStore(path)
