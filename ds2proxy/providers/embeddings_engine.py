"""Which engine answers an embeddings request, and the provider bookkeeping
around it.

A provider-backed engine spends this server's key with the provider, so as
for provider chats only callers with one of the configured API keys reach it
(a pass-through token, any string until checked, gets a 403). Embeddings
share the provider's health and slots with its chats: a provider cooling
down after a 429 or 5xx is not asked (the caller gets a 429 with the seconds
left), an embeddings request holds one of its ``max_inflight`` slots for all
its batches, and its 429s and 5xx cool the provider down for chats too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import request_record
from ..auth import Caller
from ..embeddings import EmbeddingProvider, provider_for
from ..errors import PermissionDenied, ProxyError
from .client import ProviderClient
from .embeddings_client import ProviderEmbeddings
from .registry import Providers

if TYPE_CHECKING:
    from ..core import Core


class RegistryGate:
    """:class:`~ds2proxy.providers.embeddings_client.Gate` over the registry."""

    def __init__(self, providers: Providers, name: str) -> None:
        self.providers = providers
        self.name = name
        self._client: ProviderClient | None = None

    def enter(self) -> ProviderClient:
        client = self.providers.usable(self.name)
        try:
            client.reserve()
        except ProxyError:
            self.providers.finished(self.name)
            raise
        self._client = client
        return client

    def leave(self, error: ProxyError | None) -> None:
        assert self._client is not None
        self._client.release()
        if error is None:
            self.providers.succeeded(self.name)
        else:
            self.providers.failed(self.name, error)
        self.providers.finished(self.name)


def engine_for(core: Core, dimensions: int | None, model: str,
               caller: Caller | None) -> EmbeddingProvider | None:
    """The configured engine (None: embeddings are off); a 403 for a caller
    that may not spend a provider's key."""
    cfg = core.config
    provider = cfg.provider_named(cfg.embeddings.provider)
    if provider is None:
        return provider_for(cfg.embeddings.provider, dimensions)
    if caller is None or not caller.managed:
        raise PermissionDenied("embeddings on this server are served by a provider: they need "
                               "one of this server's API keys", code="provider_needs_key")
    sent = cfg.embeddings.model or model
    record = request_record.current()
    if record is not None:  # the request log, and X-DS2Proxy-Served-By
        record.served_by = f"{provider.name}:{sent}"
        record.account = f"provider:{provider.name}"
    return ProviderEmbeddings(RegistryGate(core.providers, provider.name), model=sent,
                              dimensions=dimensions, batch_size=provider.embeddings_batch_size)
