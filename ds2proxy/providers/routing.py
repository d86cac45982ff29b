"""Which targets serve a requested model name.

In order: the first ``model_routes`` entry naming it exactly, else the first
glob that matches; else the pool when the name is the pool's own (a native
id, a DeepSeek release name, a configured alias); else the first provider
listing it exactly, else the first whose glob matches; else nobody but the
pool's catalogue (vendor aliases and family rules). So a provider that
lists ``gpt-4o`` answers it honestly, while ``deepseek-chat`` listed by the
official API stays on the pool unless a route says otherwise.
"""

from __future__ import annotations

from ..canonical import ResolvedModel
from ..config import Config
from ..errors import ModelNotFound
from ..models import DEEPSEEK_RELEASES, NO_THINKING_SUFFIX, ModelCatalog
from .settings import ModelRoute, ProviderSettings, RouteTarget, is_glob


def normalised(name: str) -> str:
    """How names compare: trimmed, lower case, without Gemini's ``models/``."""
    return name.strip().lower().removeprefix("models/")


class Router:
    """The routing view of one config (rebuilt on every config change)."""

    def __init__(self, config: Config, catalog: ModelCatalog) -> None:
        self._catalog = catalog
        self._aliases = {normalised(k) for k in config.model_aliases}
        routes = config.model_routes
        self._routes = ([r for r in routes if not is_glob(r.pattern)]
                        + [r for r in routes if is_glob(r.pattern)])
        self._providers = config.providers
        self._exact = {normalised(r.pattern): r for r in reversed(self._routes)
                       if not is_glob(r.pattern)}
        self.active = bool(routes or self._providers)
        self._listed = self._list()

    def targets(self, name: str) -> tuple[RouteTarget, ...] | None:
        """The ordered targets for ``name``; None: the pool's catalogue alone.
        A ``-nothinking`` name goes where its base name goes (the turn then
        drops the reasoning), unless a route or a provider lists it as it is."""
        if not self.active:
            return None
        key = normalised(name)
        base = key.removesuffix(NO_THINKING_SUFFIX)
        route = self._route(key) or (self._route(base) if base != key else None)
        if route is not None:
            return route.targets
        if self._pool_owns(key):
            return None
        if self._listing(key) is not None:
            base = key
        provider = self._provider(base)
        if provider is None:
            return None
        spelled = name.strip().removeprefix("models/")[:len(base)]
        model = next((m for m in provider.models if m.lower() == base), spelled)
        return (RouteTarget(provider.name, model),)

    def _route(self, key: str) -> ModelRoute | None:
        exact = self._exact.get(key)
        if exact is not None:
            return exact
        return next((r for r in self._routes if is_glob(r.pattern) and r.matches(key)), None)

    def _pool_owns(self, key: str) -> bool:
        base = key.removesuffix(NO_THINKING_SUFFIX)
        return (self._catalog.native(base) is not None or base in DEEPSEEK_RELEASES
                or base in self._aliases)

    def _listing(self, key: str) -> ProviderSettings | None:
        return next((p for p in self._providers
                     if key in (m.lower() for m in p.listed_models())), None)

    def _provider(self, key: str) -> ProviderSettings | None:
        return self._listing(key) or next((p for p in self._providers if p.serves(key)), None)

    def resolve(self, name: str, family: str | None) -> ResolvedModel | None:
        """The resolved model of a routed name (None: not routed). With a pool
        target the pool's own resolution, when the catalogue knows the name."""
        targets = self.targets(name)
        if targets is None:
            return None
        provider = next((t for t in targets if not t.is_pool), None)
        if any(t.is_pool for t in targets) and (provider is None or self._pool_knows(name,
                                                                                     family)):
            return self._catalog.resolve(name, family=family)
        assert provider is not None
        key = normalised(name)
        return ResolvedModel(requested=name, native=provider.model, model_type="default",
                             thinking=False, search=False,
                             force_no_thinking=key.endswith(NO_THINKING_SUFFIX)
                             and self._listing(key) is None)

    def _pool_knows(self, name: str, family: str | None) -> bool:
        try:
            self._catalog.resolve(name, family=family)
        except ModelNotFound:
            return False
        return True

    def listed(self) -> list[tuple[str, str]]:
        """``(model id, provider)`` of every literal provider model and routed
        name the pool does not own, in config order, without repeats."""
        return list(self._listed)

    def _list(self) -> list[tuple[str, str]]:
        seen: set[str] = set()
        out: list[tuple[str, str]] = []
        for provider in self._providers:
            for model in provider.listed_models():
                if normalised(model) not in seen and not self._pool_owns(normalised(model)):
                    seen.add(normalised(model))
                    out.append((model, provider.name))
        for route in self._routes:
            key = normalised(route.pattern)
            first = next((t for t in route.targets if not t.is_pool), None)
            if is_glob(route.pattern) or key in seen or self._pool_owns(key) or first is None:
                continue
            seen.add(key)
            out.append((route.pattern, first.provider or ""))
        return out
