"""The configured providers at run time: their clients, health and routing.

:class:`Providers` is what the core holds. It picks the turn for a request
(:meth:`turn_for`: a plain pool turn when nothing routes the name, else a
:class:`~ds2proxy.providers.routed.RoutedTurn`), keeps one client per
provider (made on first use, replaced when its settings change; a replaced
client is closed at shutdown so answers in flight finish), and tells the
health tracker and the metrics how each provider request went.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import request_record
from ..auth import Caller
from ..canonical import ChatRequest
from ..config import Config
from ..errors import InvalidRequest, ModelNotFound, PermissionDenied, ProxyError, RateLimited
from ..models import ModelCatalog
from ..pipeline import Turn
from .client import ProviderClient
from .health import ProviderHealth
from .routed import RoutedTurn
from .routing import Router
from .turn import provider_prompt_tokens
from .settings import POOL, ProviderSettings, RouteTarget

if TYPE_CHECKING:
    from ..core import Core

Outcome = Callable[[str, str], None]


class Providers:
    def __init__(self, config: Config, catalog: ModelCatalog) -> None:
        self._catalog = catalog
        self.health = ProviderHealth(config.health)
        self._clients: dict[str, ProviderClient] = {}
        self._retired: list[ProviderClient] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._settings: dict[str, ProviderSettings] = {}
        self.on_outcome: Outcome | None = None  # (provider, outcome) for the metrics
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Hot reload: new routes now, a changed provider gets a new client and
        a clean slate (a cooldown its old settings earned is forgotten)."""
        old = self._settings
        self._settings = {p.name: p for p in config.providers}
        for name in [n for n in old if self._settings.get(n) != old[n]]:
            self.health.forget(name)
        self.router = Router(config, self._catalog)
        self.health.settings = config.health
        for name, client in list(self._clients.items()):
            if self._settings.get(name) != client.settings:
                self._retired.append(self._clients.pop(name))
        self._close_idle_retired()

    def _close_idle_retired(self) -> None:
        """Close replaced clients once no answer of theirs is in flight."""
        idle = [c for c in self._retired if not c.inflight]
        if not idle:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving yet: closed at shutdown
        self._retired = [c for c in self._retired if c.inflight]
        for client in idle:
            task = loop.create_task(client.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing)
        for client in [*self._clients.values(), *self._retired]:
            await client.close()
        self._clients.clear()
        self._retired.clear()

    def settings(self) -> list[ProviderSettings]:
        return list(self._settings.values())

    def inflight(self, name: str) -> int:
        client = self._clients.get(name)
        return client.inflight if client is not None else 0

    # -- a request's turn ---------------------------------------------------------------

    def turn_for(self, core: Core, chat: ChatRequest, caller: Caller) -> Turn | RoutedTurn:
        targets = self.router.targets(chat.model.requested)
        if targets is not None:
            targets = self._servable(chat, caller, targets)
        if targets is None or targets == (RouteTarget(),):
            _note_served(POOL)
            return Turn(core, chat, caller)
        return RoutedTurn(core, self, chat, caller, targets)

    def _servable(self, chat: ChatRequest, caller: Caller,
                  targets: tuple[RouteTarget, ...]) -> tuple[RouteTarget, ...]:
        """The targets this caller and model may use. Providers spend this
        server's API keys: only callers with one of its keys reach them (a
        pass-through token, which is any string until checked, does not),
        and a request pinned to an account stays on the pool."""
        pool_ok = self._catalog.native(chat.model.native) is not None
        providers_ok = caller.managed and not caller.target_account
        kept = tuple(t for t in targets if (pool_ok if t.is_pool else providers_ok))
        if kept:
            return kept
        if not pool_ok and any(t.is_pool for t in targets) and providers_ok:
            raise ModelNotFound(chat.model.requested)
        if not caller.managed:
            raise PermissionDenied(f"model '{chat.model.requested[:100]}' is served by a "
                                   "provider: it needs one of this server's API keys",
                                   code="provider_needs_key")
        raise InvalidRequest(f"model '{chat.model.requested[:100]}' is served by a provider; "
                             "a request pinned to an account cannot use it",
                             code="provider_not_pinnable")

    # -- clients and outcomes --------------------------------------------------------

    def usable(self, name: str) -> ProviderClient:
        """The client of ``name``, unless the provider is cooling down (429)."""
        if not self.health.available(name):
            left = self.health.seconds_left(name)
            self._count(name, "cooling_down")
            raise RateLimited(f"provider {name} is cooling down after errors",
                              retry_after=max(1, left), code="provider_cooling_down")
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = ProviderClient(self._settings[name])
        return client

    def client(self, name: str) -> ProviderClient | None:
        """The client of ``name`` whatever its health (None: not configured),
        for the admin's test button to send what a turn would."""
        if name not in self._settings:
            return None
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = ProviderClient(self._settings[name])
        return client

    def failed(self, name: str, exc: ProxyError) -> None:
        if exc.code != "provider_cooling_down":
            self.health.failed(name, exc)
            self._count(name, exc.code or "error")

    def succeeded(self, name: str) -> None:
        self.health.succeeded(name)
        self._count(name, "ok")

    def finished(self, name: str) -> None:
        self.health.finished(name)
        if self._retired:
            self._close_idle_retired()

    def _count(self, name: str, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(name, outcome)

    async def prompt_tokens(self, chat: ChatRequest, config: Config) -> int | None:
        """Our count of the prompt a turn for ``chat`` would send to the
        provider that answers its model first; None when the pool does."""
        targets = self.router.targets(chat.model.requested)
        if not targets or targets[0].provider is None:
            return None
        first = targets[0]
        return await provider_prompt_tokens(chat, config, self._settings[first.provider],
                                            first.model)

    # -- model lists -------------------------------------------------------------------

    def listed(self) -> list[tuple[str, str]]:
        """``(model id, provider)`` for the model lists of every family."""
        return self.router.listed()

    def owner(self, name: str) -> str | None:
        """The provider that answers ``name`` first, if not the pool."""
        targets = self.router.targets(name)
        return targets[0].provider if targets else None


def _note_served(label: str) -> None:
    record = request_record.current()
    if record is not None:
        record.served_by = label
