"""What the admin can read and change, shared by the JSON API and the
dashboard forms so both behave exactly alike.

Reads are masked (see :mod:`.masking`); writes are edits (see :mod:`.edits`)
run through ``ConfigStore.update``, whose listeners hot-reload the pool,
the model catalogue and the capture buffer.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from ..captures import CaptureBuffer
from ..config import AccountConfig, ConfigError
from ..config_fields import SCHEMA, load_warnings, suggestion
from ..errors import InvalidRequest, NotFound, ProxyError
from ..health import DISABLED
from ..plugin_api import PluginInfo
from . import edits, probes, settings
from .pool_counts import queue_counts, worth_showing
from .config_tag import check_if_match, etag_of
from .credentials import AdminCredentials
from .masking import (mask_tree, masked_account, masked_key, restore_tree,
                      without_admin_secrets)
from .provider_edits import masked_provider, restore_masked, without_read_only
from .provider_ops import ProviderOps
from .responses import FieldErrors

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("ds2proxy.admin")

MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000
OVERVIEW_ROWS = 20
VIEW_IN_THREAD_ACCOUNTS = 200
T = TypeVar("T")


def _int_arg(value: Any, name: str, default: int, lo: int, hi: int | None = None) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"'{name}' must be a whole number", param=name) from None
    if number < lo or (hi is not None and number > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise InvalidRequest(f"'{name}' must be {bound}", param=name)
    return number


def _not_here(name: str, allowed: tuple[str, ...]) -> str:
    if name == "providers":
        return "cannot be set here; use /admin/providers"
    if name in SCHEMA:
        return "cannot be set here; use /admin/settings or /admin/config/import"
    close = suggestion(name, allowed) or suggestion(name)
    return "unknown field" + (f" (did you mean '{close}'?)" if close else "")


class ConfigNotSaved(ProxyError):
    status = 503
    type = "api_error"
    code = "config_not_saved"


@contextmanager
def _saving() -> Iterator[None]:
    """A write's failures as admin errors: 400 for a bad value, 503 for a
    file that cannot take it (nothing changed, one log line)."""
    try:
        yield
    except ConfigError as exc:
        problem = str(exc).removeprefix(f"config field '{exc.field}': ")
        raise InvalidRequest(f"{exc.field}: {problem}", param=exc.field) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        log.error("config change not saved: %s", reason)
        raise ConfigNotSaved(f"the config could not be saved ({reason}); nothing was "
                             "changed") from None


class AdminOps:
    def __init__(self, core: Core, creds: AdminCredentials, captures: CaptureBuffer,
                 plugins: list[PluginInfo]) -> None:
        self.core = core
        self.creds = creds
        self.captures = captures
        self.plugins = plugins
        self.last_tests: dict[str, dict[str, Any]] = {}
        self.failed_tests: dict[str, None] = {}  # accounts whose last test failed
        self._order: tuple[tuple[AccountConfig, ...], dict[str, int]] = ((), {})
        self.providers = ProviderOps(self)

    # -- the one way to write ------------------------------------------------------------

    async def write(self, edit: Callable[[dict[str, Any]], Any]) -> None:
        """Run ``edit`` through the atomic writer; a bad result is a 400 naming
        the field, a file that cannot be written a 503 (nothing changed)."""
        with _saving():
            await self.core.store.update(edit)

    async def change_password(self, new_password: Any) -> None:
        """The admin password, saved like every other admin write (a 503 when
        the file cannot take it, and the old password still works)."""
        with _saving():
            await self.creds.change_password(new_password)

    # -- config ----------------------------------------------------------------------------

    def config_view(self) -> dict[str, Any]:
        # Read in place: each part below is rebuilt (masked), never changed.
        doc = without_admin_secrets(self.core.store.current())
        view = mask_tree({k: v for k, v in doc.items() if k not in ("keys", "accounts")})
        cfg = self.core.config
        view["keys"] = [masked_key(k) for k in cfg.key_secrets]
        view["accounts"] = [self.account_view(a) for a in cfg.accounts]
        if isinstance(doc.get("providers"), list):
            view["providers"] = [masked_provider(p) for p in doc["providers"]
                                 if isinstance(p, dict)]
        return view

    def config_etag(self) -> str:
        return etag_of(self.core.store.current())

    def tagged_config_view(self) -> tuple[dict[str, Any], str]:
        """The masked config and its ETag; thread-safe (reads only)."""
        return self.config_view(), self.config_etag()

    async def config_view_async(self) -> tuple[dict[str, Any], str]:
        """:meth:`tagged_config_view`, in a worker thread once there are many
        accounts: 4,000 of them, each viewed with its health, held the loop
        for 35–55 ms. The documents it reads are replaced, never changed."""
        if len(self.core.config.accounts) < VIEW_IN_THREAD_ACCOUNTS:
            return self.tagged_config_view()
        return await asyncio.to_thread(self.tagged_config_view)

    async def replace_lists(self, body: dict[str, Any], if_match: str | None = None) -> None:
        """``POST /admin/config``: replace keys, accounts and the model maps given
        (412 when ``if_match`` names an older config)."""
        allowed = ("keys", "accounts", "claude_mapping", "model_aliases")
        unknown = {name: _not_here(name, allowed) for name in body if name not in allowed}
        if unknown:
            raise FieldErrors(unknown)
        maps = {k: body[k] for k in body if k in settings.MAPS}
        errors = self.settings_errors(maps)
        if errors:
            raise FieldErrors(errors)

        def edit(data: dict[str, Any]) -> None:
            check_if_match(if_match, data)
            if "keys" in body:
                data["keys"] = edits.resolve_keys(data.get("keys") or [], body["keys"])
            if "accounts" in body:
                data["accounts"] = edits.resolve_accounts(data.get("accounts") or [],
                                                          body["accounts"])
            settings.apply_changes(data, maps)

        await self.write(edit)

    async def import_config(self, body: dict[str, Any], mode: str | None,
                            if_match: str | None = None) -> dict[str, Any]:
        """Merge or replace (412 when ``if_match`` names an older config);
        unknown fields are kept but each comes back as a warning naming the
        closest known field (a typo is not silently lost)."""
        doc, mode = edits.unwrap_import(body, mode)

        def edit(data: dict[str, Any]) -> dict[str, Any]:
            check_if_match(if_match, data)
            result = edits.import_document(data, doc, mode)
            restore_masked(data, result)  # a masked read sent back keeps its secrets
            return result

        await self.write(edit)
        warnings = load_warnings(without_read_only(edits.without_read_fields(doc)))
        for warning in warnings:
            log.warning("config import: %s", warning)
        cfg = self.core.config
        return {"success": True, "mode": mode, "total_keys": len(cfg.key_secrets),
                "total_accounts": len(cfg.accounts), "warnings": warnings}

    def export(self) -> dict[str, Any]:
        """The full config, secrets included (a backup), minus the admin's
        credentials. Its ``config`` is the live document's: serialise it, never
        change it."""
        doc = without_admin_secrets(self.core.store.current())
        text = orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
        return {"config": doc, "json": text, "base64": base64.b64encode(text.encode()).decode()}

    # -- settings --------------------------------------------------------------------------

    def settings_view(self) -> dict[str, Any]:
        return settings.nested_view(self.core.config, password_set=self.creds.password_set,
                                    default_key_in_use=self.creds.default_key_in_use,
                                    config_source=self.core.store.source,
                                    memory_only=self.core.store.path is None)

    def _is_native(self, name: str) -> bool:
        return self.core.models.native(name) is not None

    def settings_errors(self, changes: dict[str, Any]) -> dict[str, str]:
        """Every invalid change, by field (empty: all fine)."""
        return settings.field_errors(self.core.store.current(), changes, self._is_native)

    async def update_settings(self, changes: dict[str, Any]) -> None:
        errors = self.settings_errors(changes)
        if errors:
            raise FieldErrors(errors)
        await self.write(lambda data: settings.apply_changes(data, changes))

    # -- keys and accounts -------------------------------------------------------------------

    async def _edit_returning(self, edit: Callable[[dict[str, Any]], T]) -> T:
        """Write ``edit`` and hand back what it returned (a count, a tuple …)."""
        box: list[T] = []
        await self.write(lambda data: box.append(edit(data)))
        return box[-1]

    async def add_key(self, key: Any) -> int:
        clean = edits.clean_key(key)
        return await self._edit_returning(lambda data: edits.add_key(data, clean))

    async def remove_key(self, key_or_id: str) -> int:
        return await self._edit_returning(lambda data: edits.remove_key(data, key_or_id))

    async def add_account(self, item: Any) -> tuple[str, int]:
        account = edits.clean_account(item)
        total = await self._edit_returning(lambda data: edits.add_account(data, account))
        return edits.identifier_of(account), total

    async def set_proxy(self, identifier: str, proxy: Any) -> dict[str, Any]:
        """An account's outbound proxy ("" for none); applies to its next call."""
        if not isinstance(proxy, str):
            raise InvalidRequest("'proxy' must be a string (empty for none)", param="proxy")
        await self.write(lambda data: edits.set_account_proxy(data, identifier, proxy.strip()))
        state = self.core.pool.find(identifier)
        if state is None:  # a delete that was waiting for the writer came next
            raise NotFound(f"account {identifier} was removed right after its proxy was set")
        return self.account_view(state.config)

    async def remove_account(self, identifier: str) -> int:
        return await self._edit_returning(lambda data: edits.remove_account(data, identifier))

    async def batch_import(self, keys: Any, accounts: Any) -> dict[str, Any]:
        if not isinstance(keys or [], list) or not isinstance(accounts or [], list):
            raise InvalidRequest("'keys' and 'accounts' must be lists")
        clean_keys = [edits.clean_key(k) for k in keys or []]
        clean_accounts = [edits.clean_account(a) for a in accounts or []]

        def edit(data: dict[str, Any]) -> tuple[int, int, int]:
            return (edits.merge_keys(data, clean_keys),
                    *edits.upsert_accounts(data, clean_accounts))

        new_keys, added, updated = await self._edit_returning(edit)
        return {"success": True, "imported_keys": new_keys, "imported_accounts": added,
                "updated_accounts": updated}

    def accounts_page(self, page: Any, page_size: Any, query: str = "") -> dict[str, Any]:
        number = _int_arg(page, "page", 1, 1, MAX_PAGE)
        size = _int_arg(page_size, "page_size", 10, 1, MAX_PAGE_SIZE)
        needle = query.strip().lower()
        accounts = [a for a in self.core.config.accounts
                    if not needle or needle in a.identifier.lower()]
        chunk = accounts[(number - 1) * size: number * size]
        return {"items": [self.account_view(a) for a in chunk],
                "total": len(accounts), "page": number, "page_size": size,
                "total_pages": math.ceil(len(accounts) / size)}

    # -- account health ------------------------------------------------------------------------

    def account_view(self, account: AccountConfig) -> dict[str, Any]:
        pool = self.core.pool
        return masked_account(account, pool.find(account.identifier),
                              pool.health.view(account.identifier))

    def set_health(self, identifier: str, action: str) -> dict[str, Any]:
        """Operator override: ``disable``, ``enable`` (a disabled account) or
        ``reset`` (healthy at once, backoff forgotten)."""
        state = self.core.pool.find(identifier)
        if state is None:
            raise NotFound(f"account {identifier!r} is not configured")
        tracker = self.core.pool.health
        if action == "disable":
            tracker.disable(state.identifier)
        elif action == "reset" or (action == "enable" and tracker.state(state.identifier)
                                   == DISABLED):
            tracker.reset(state.identifier)
            state.last_error = ""
        elif action != "enable":
            raise InvalidRequest("action must be disable, enable or reset", param="action")
        return self.account_view(state.config)

    # -- account tests -------------------------------------------------------------------------

    def _remember(self, result: dict[str, Any]) -> dict[str, Any]:
        self.last_tests[result["account"]] = {**result, "at": time.time()}
        if result["success"]:
            self.failed_tests.pop(result["account"], None)
        else:
            self.failed_tests[result["account"]] = None
        return result

    async def test_account(self, identifier: str, *, model: str, message: str
                           ) -> dict[str, Any]:
        return self._remember(await probes.test_account(self.core, identifier, model=model,
                                                        message=message))

    async def test_all(self, *, model: str, message: str) -> AsyncIterator[dict[str, Any]]:
        """Every account's result as it finishes (kept for the accounts page)."""
        async for result in probes.each_account(self.core, model=model, message=message):
            yield self._remember(result)

    # -- live status ---------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """Live status; the account table holds at most :data:`OVERVIEW_ROWS`
        rows, those needing attention first (busy, unhealthy, failing): with
        thousands of accounts a row each held the loop for half a second.
        Every account is on the paged accounts page; the counts cover all,
        read off the accounts that are busy or unhealthy (see :mod:`.pool_counts`)."""
        pool = self.core.pool
        shown = worth_showing(pool, list(self.failed_tests), self._config_order(),
                              OVERVIEW_ROWS)
        return {
            "monitor": self.core.monitor.snapshot(),
            "queue": queue_counts(pool),
            "accounts": [{"identifier": s.identifier, "inflight": s.inflight,
                          "has_token": bool(s.token), "last_error": s.last_error,
                          **pool.health.view(s.identifier)}
                         for s in shown],
            "accounts_total": pool.size,
            "keys": len(self.core.config.key_secrets),
            "captures_enabled": self.captures.enabled,
            "default_key_in_use": self.creds.default_key_in_use,
        }

    def _config_order(self) -> dict[str, int]:
        """Each account's place in the config, built once per account list."""
        accounts = self.core.config.accounts
        if self._order[0] is not accounts:
            self._order = (accounts, {a.identifier: i for i, a in enumerate(accounts)})
        return self._order[1]

    def plugin_list(self) -> list[dict[str, Any]]:
        return [{"name": p.name, "module": p.module, "version": p.version,
                 "routes": list(p.routes), "error": p.error, "loaded": p.loaded,
                 "disabled": p.disabled}
                for p in self.plugins]

    def _loaded_plugin(self, name: str) -> str:
        if not any(p.name == name and p.loaded for p in self.plugins):
            raise NotFound(f"plugin {name!r} is not loaded")
        return name

    def plugin_settings(self, name: str) -> dict[str, Any]:
        """``plugins.<name>``, masked like every admin read."""
        section = (self.core.store.snapshot().get("plugins") or {}).get(self._loaded_plugin(name))
        return {"name": name, "settings": mask_tree(section if isinstance(section, dict) else {})}

    async def set_plugin_settings(self, name: str, section: dict[str, Any]) -> None:
        """Replace ``plugins.<name>`` (a secret sent back as the preview a read
        showed keeps its stored value); the plugin's own check refuses a bad
        value (a 400 naming ``plugins.<name>.<field>``), a good one reaches
        the plugin at once."""
        self._loaded_plugin(name)

        def edit(data: dict[str, Any]) -> None:
            plugins = data.get("plugins") if isinstance(data.get("plugins"), dict) else {}
            # The masked read sent back keeps the secrets it showed as previews.
            data["plugins"] = {**plugins, name: restore_tree(plugins.get(name), section)}

        await self.write(edit)

    def captures_view(self) -> dict[str, Any]:
        return {"enabled": self.captures.enabled, "limit": self.captures.limit,
                "max_body_bytes": self.captures.max_body_bytes, "items": self.captures.items()}
