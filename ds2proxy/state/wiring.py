"""Puts the state backend under the core's services: account health and
pacing, key limits, usage, the config and admin session revocation.

With the embedded backend nothing here talks to anything outside the
process. With Redis it subscribes to the other instances' changes (before
the link starts, so one subscription covers them all), loads the shared
account health, and keeps the config on the shared document. Redis being
unreachable at start is not fatal: health is loaded when it answers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..health.tracker import NAMESPACE as HEALTH_NAMESPACE
from .backend import StateBackend, open_backend
from .errors import StateUnavailable

if TYPE_CHECKING:
    from ..core import Core
    from .shared_config import ConfigSync

log = logging.getLogger("ds2proxy.state")


def backend_for(core: Core) -> StateBackend:
    """The backend the core's config asks for (link: the core's Redis link)."""
    return open_backend(core.store.path, core.config.usage, core.link,
                        core.config.state.lease_ttl_seconds)


def attach(core: Core) -> None:
    """Point the pool, the limiter and the pacer at the backend's stores."""
    backend = core.backend
    core.limiter.shared = backend.counters
    core.pool.pacer.gate = backend.pacing


class SharedState:
    """What runs for the core's lifetime when state is shared."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.sync: ConfigSync | None = None

    async def before_link(self) -> None:
        """Subscribe to changes and load what the pool needs (link not started)."""
        core, backend = self.core, self.core.backend
        if not backend.shared:
            await self.load_health()
            return
        from .shared_config import ConfigSync, SharedDocument

        backend.records.watch(HEALTH_NAMESPACE, core.pool.health.adopt)
        self.sync = ConfigSync(core.store, SharedDocument(core.link))
        self.sync.start()
        core.link.on_up(self.load_health)
        core.store.shared = self.sync.doc
        await self.load_health()
        try:
            await self.sync.join()
        except StateUnavailable:
            log.warning("the shared config is not reachable yet; using %s until it is",
                        core.store.describe())

    async def load_health(self) -> None:
        health = self.core.pool.health
        try:
            health.load(await self.core.backend.records.load(HEALTH_NAMESPACE))
        except StateUnavailable:
            log.warning("shared account health not reachable yet; loaded when it is")
            return
        health.forget_except(s.identifier for s in self.core.pool.accounts())

    async def close(self) -> None:
        # Requests still counting their usage charge their key (a state
        # write) and are recorded now, while the state stores are open.
        await self.core.usage.counted()
        if self.sync is not None:
            await self.sync.close()
        await self.core.limiter.flush()  # tokens counted here reach the cluster's totals
        close_counters = getattr(self.core.backend.counters, "close", None)
        if close_counters is not None:
            await close_counters()
