"""Prometheus metrics for ``/metrics`` (text exposition format).

Each app has its own registry, so two servers in one process never share
counters. Label values are bounded: a model the catalogue does not know is
"other", a key name that is not configured is "other", and secrets never
become labels (keys appear by name only).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .errors import ProxyError
from .keyring import PASS_THROUGH
from .request_record import RequestRecord

if TYPE_CHECKING:
    from .core import Core

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_POW_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
REQUEST_LABELS = ("family", "model", "status", "key")


def _endpoint(path: object) -> str:
    """An upstream path without its query: ``fetch_files?file_ids=…`` names
    the files it polls, and a label per file id would grow without end."""
    return str(path).partition("?")[0]


class _PoolCollector(Collector):
    """Pool gauges read at scrape time, so they are never stale."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pool = self.core.pool
        yield GaugeMetricFamily("ds2proxy_pool_inflight", "Account leases held now",
                                value=pool.inflight)
        yield GaugeMetricFamily("ds2proxy_pool_queued", "Requests waiting for an account",
                                value=pool.waiting)
        states = GaugeMetricFamily("ds2proxy_pool_accounts", "Accounts by health state",
                                   labels=["state"])
        accounts = pool.accounts()
        counts = pool.health.counts(a.identifier for a in accounts)
        for state, count in sorted(counts.items()):
            states.add_metric([state], count)
        yield states
        busy = GaugeMetricFamily("ds2proxy_pool_accounts_busy",
                                 "Accounts with at least one lease held now")
        busy.add_metric([], sum(1 for a in accounts if a.inflight))
        yield busy


class Metrics:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter("ds2proxy_requests", "API requests by outcome",
                                REQUEST_LABELS, registry=reg)
        self.latency = Histogram("ds2proxy_request_seconds", "Request latency",
                                 REQUEST_LABELS, buckets=_LATENCY_BUCKETS, registry=reg)
        self.ttfb = Histogram("ds2proxy_request_ttfb_seconds", "Time to the first byte",
                              REQUEST_LABELS, buckets=_LATENCY_BUCKETS, registry=reg)
        self.tokens = Counter("ds2proxy_tokens", "Tokens by kind",
                              ("family", "model", "key", "kind"), registry=reg)
        self.upstream = Counter("ds2proxy_upstream_calls", "Calls to the upstream",
                                ("endpoint", "outcome"), registry=reg)
        self.pow_seconds = Histogram("ds2proxy_pow_solve_seconds", "PoW solve time",
                                     buckets=_POW_BUCKETS, registry=reg)
        reg.register(_PoolCollector(core))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- label bounding --------------------------------------------------------------------

    def _model(self, name: str) -> str:
        if not name:
            return ""
        known = {m.id for m in self.core.models.natives()}
        known.update(self.core.config.model_aliases)
        known.update(model for model, _ in self.core.provider_models())
        return name if name in known else OTHER

    def _key(self, name: str) -> str:
        if not name or name == PASS_THROUGH:
            return name
        return name if any(k.name == name for k in self.core.config.keys) else OTHER

    # -- observations ----------------------------------------------------------------------

    def observe(self, record: RequestRecord) -> None:
        model = self._model(record.native_model or record.model)
        key = self._key(record.key_name)
        labels = (record.family, model, str(record.status), key)
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(record.latency_ms / 1000)
        if record.ttfb_ms is not None:
            self.ttfb.labels(*labels).observe(record.ttfb_ms / 1000)
        for kind, value in (("prompt", record.prompt_tokens),
                            ("completion", record.completion_tokens),
                            ("reasoning", record.reasoning_tokens)):
            if value > 0:  # a counter only goes up (inc of a negative raises)
                self.tokens.labels(record.family, model, key, kind).inc(value)

    def instrument(self, client: Any) -> None:
        """Count the upstream client's calls by endpoint and outcome."""
        client._call = self._counted(client._call, path_at=2)
        client.open_stream = self._counted(client.open_stream, path_at=0)

    def _counted(self, call: Callable[..., Any], *, path_at: int) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            endpoint = _endpoint(args[path_at]) if len(args) > path_at else "?"
            try:
                result = await call(*args, **kwargs)
            except ProxyError as exc:
                self.upstream.labels(endpoint, exc.code or type(exc).__name__).inc()
                raise
            self.upstream.labels(endpoint, "ok").inc()
            return result

        return counted

    def time_pow(self, started: float) -> None:
        self.pow_seconds.observe(time.perf_counter() - started)
