"""Small persistent state beside the config: account health today, usage
and other backends later. Everything goes through :class:`StateStore`."""

from .store import MemoryStore, StateStore, open_store

__all__ = ["MemoryStore", "StateStore", "open_store"]
