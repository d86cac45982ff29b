"""Embeddings requests share a provider's health and slots with its chats.

A provider cooling down after a 429 or 5xx is not asked for vectors either
(the caller gets a 429 with the seconds left), an embeddings request holds
one of the provider's ``max_inflight`` slots for all its batches, and its
429s and 5xx cool the provider down for the chats too.
"""

from __future__ import annotations

from ..errors import ProxyError
from .client import ProviderClient
from .registry import Providers


class RegistryGate:
    """:class:`~ds2proxy.providers.embeddings_client.Gate` over the registry."""

    def __init__(self, providers: Providers, name: str) -> None:
        self.providers = providers
        self.name = name
        self._client: ProviderClient | None = None

    def enter(self) -> None:
        client = self.providers.usable(self.name)
        try:
            client.reserve()
        except ProxyError:
            self.providers.finished(self.name)
            raise
        self._client = client

    def leave(self, error: ProxyError | None) -> None:
        assert self._client is not None
        self._client.release()
        if error is None:
            self.providers.succeeded(self.name)
        else:
            self.providers.failed(self.name, error)
        self.providers.finished(self.name)
