"""What the admin can read and change about upstream providers, shared by the
JSON API and the dashboard forms (as :class:`.operations.AdminOps` is for
accounts and keys). Reads are masked; writes go through ``AdminOps.write``
(the one atomic, fsync'd, serialised writer, hot-reloaded on success).
"""

from __future__ import annotations

import fnmatch
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from . import provider_edits as edits
from .provider_probe import test_provider

if TYPE_CHECKING:
    from .operations import AdminOps

log = logging.getLogger("ds2proxy.admin")


def _serves(patterns: list[str], listed: list[str]) -> list[str]:
    """The provider's listed models that its configured names or globs admit
    (ignoring case, as routing does)."""
    lowered = [p.lower() for p in patterns]
    return [m for m in listed if any(fnmatch.fnmatchcase(m.lower(), p) for p in lowered)]


class ProviderOps:
    def __init__(self, ops: AdminOps) -> None:
        self.ops = ops
        self.last_tests: dict[str, dict[str, Any]] = {}

    def _stored(self) -> list[dict[str, Any]]:
        items = self.ops.core.store.snapshot().get("providers")
        return [p for p in items if isinstance(p, dict)] if isinstance(items, list) else []

    def view(self, item: dict[str, Any]) -> dict[str, Any]:
        """One provider, masked, with its last test and the models it was seen to serve."""
        masked = edits.masked_provider(item)
        test = self.last_tests.get(edits.name_of(item))
        patterns = [m for m in item.get("models") or [] if isinstance(m, str)]
        masked["last_test"] = test
        masked["serves"] = _serves(patterns, test["models"]) if test else []
        name = edits.name_of(item)
        registry = self.ops.core.providers
        masked.update(registry.health.view(name), inflight=registry.inflight(name))
        return masked

    def listing(self) -> dict[str, Any]:
        items = [self.view(p) for p in self._stored()]
        return {"items": items, "total": len(items)}

    def get(self, name: str) -> dict[str, Any]:
        return self.view(edits.find({"providers": self._stored()}, name))

    async def add(self, item: Any) -> tuple[dict[str, Any], int]:
        provider = edits.clean_provider(item)
        total = await self.ops._edit_returning(lambda data: edits.add_provider(data, provider))
        log.info("provider %s added", provider["name"])
        return self.view(provider), total

    async def update(self, name: str, changes: Any) -> dict[str, Any]:
        updated = await self.ops._edit_returning(
            lambda data: edits.update_provider(data, name, changes))
        if updated["name"] != name:
            self.last_tests.pop(name, None)
        log.info("provider %s updated", updated["name"])
        return self.view(updated)

    async def remove(self, name: str) -> int:
        total = await self.ops._edit_returning(lambda data: edits.remove_provider(data, name))
        self.last_tests.pop(name, None)
        log.info("provider %s removed", name)
        return total

    async def test(self, name: str, *, model: str = "") -> dict[str, Any]:
        """Call the provider as configured; the verdict is kept for the dashboard."""
        provider = edits.find({"providers": self._stored()}, name)
        http = self.ops.core.http
        # The limit goes under the name a turn would send it (and a name the
        # provider teaches here is what its turns send from now on).
        client = self.ops.core.providers.client(name) if model else None
        field = client.limit_field(model) if client is not None else "max_tokens"
        if http is None:  # outside the app's lifetime (never while serving)
            async with aiohttp.ClientSession() as own:
                result = await test_provider(own, provider, model=model, limit_field=field)
        else:
            result = await test_provider(http, provider, model=model, limit_field=field)
        if client is not None and "limit_field" in result:
            client.learn_limit_field(model, result["limit_field"])
        self.last_tests[name] = {**result, "at": time.time()}
        return result
