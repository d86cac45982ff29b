"""Provider metrics for ``/metrics``: requests by provider and outcome, and
per provider the requests in flight and the cooldown left (read at scrape
time). Provider names come from the config, so the labels stay bounded."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .registry import Providers


class _ProviderGauges(Collector):
    def __init__(self, providers: Providers) -> None:
        self.providers = providers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        inflight = GaugeMetricFamily("ds2proxy_provider_inflight",
                                     "Provider requests in flight", labels=["provider"])
        cooling = GaugeMetricFamily("ds2proxy_provider_cooldown_seconds",
                                    "Seconds until a cooling provider is tried again",
                                    labels=["provider"])
        for settings in self.providers.settings():
            inflight.add_metric([settings.name], self.providers.inflight(settings.name))
            cooling.add_metric([settings.name], self.providers.health.seconds_left(settings.name))
        yield inflight
        yield cooling


class ProviderMetrics:
    """Counts each provider request's outcome (``ok``, an error code,
    ``cooling_down``) into the app's registry."""

    def __init__(self, registry: CollectorRegistry, providers: Providers) -> None:
        self.requests = Counter("ds2proxy_provider_requests", "Provider requests by outcome",
                                ("provider", "outcome"), registry=registry)
        registry.register(_ProviderGauges(providers))
        providers.on_outcome = self.count

    def count(self, provider: str, outcome: str) -> None:
        self.requests.labels(provider, outcome).inc()
