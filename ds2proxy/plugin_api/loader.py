"""Loading plugins: entry points, the API version, routes, names, hooks and
settings kept live.

A plugin that fails to import, to register, to match the API version, or
whose settings or routes or model names clash, is reported (log and
``/admin/plugins``) and leaves nothing behind; the server still starts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config import ConfigError
from ..log_redaction import redact
from ..secret_names import without_secrets
from ..unmatched import PATH_CLAIMS
from .context import PluginContext, changed_settings, run_hooks
from .contract import API_VERSION, Handler, Hook, Predicate
from .routing import wrap_handler

if TYPE_CHECKING:
    from ..core import Core

log = logging.getLogger("ds2proxy.plugins")

GROUP = "ds2proxy.plugins"


@dataclass
class PluginInfo:
    """What /admin/plugins reports: name, version, routes, or the load error."""

    name: str
    module: str
    version: str = ""
    routes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def loaded(self) -> bool:
        return not self.error


def discover(group: str = GROUP) -> list[EntryPoint]:
    return sorted(entry_points(group=group), key=lambda ep: ep.name)


def compatible(required: str, provided: str = API_VERSION) -> bool:
    """Same major version, and at least the minor version the plugin needs."""
    try:
        need = tuple(int(part) for part in required.split("."))
        have = tuple(int(part) for part in provided.split("."))
    except ValueError:
        return False
    return len(need) == 2 and need[0] == have[0] and need[1] <= have[1]


def section_of(doc: Mapping[str, Any], name: str) -> Any:
    plugins = doc.get("plugins")
    return plugins.get(name, {}) if isinstance(plugins, dict) else {}


def settings_problems(api: PluginContext, section: Any) -> dict[str, str]:
    """``plugins.<name>.<field>`` → problem, for a candidate section."""
    where = f"plugins.{api.name}"
    if not isinstance(section, dict):
        return {where: "must be an object"}
    if api._check is None:
        return {}
    # A check may quote the value it refuses: never a secret back to the admin.
    return {f"{where}.{key}": redact(without_secrets(str(problem), section))
            for key, problem in api._check(section).items()}


class RouteTable:
    """Routes of all plugins; a shared method + path becomes one dispatcher."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], list[tuple[Predicate | None, Handler]]] = {}

    def clashes(self, api: PluginContext) -> list[str]:
        """Routes another plugin already serves unconditionally."""
        return [f"{m} {p}" for m, p, _, when, _ in api._routes if when is None and any(
            w is None for w, _ in self._routes.get((m, p), []))]

    def add(self, method: str, path: str, handler: Handler, when: Predicate | None) -> None:
        self._routes.setdefault((method, path), []).append((when, handler))

    def mount(self, app: web.Application) -> None:
        for (method, path), handlers in self._routes.items():
            app.router.add_route(method, path, _dispatcher(handlers))


def _dispatcher(handlers: list[tuple[Predicate | None, Handler]]) -> Handler:
    if len(handlers) == 1:
        return handlers[0][1]
    conditional = [(w, h) for w, h in handlers if w is not None]
    fallback = next((h for w, h in handlers if w is None), None)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        for when, handler in conditional:
            if when(request):
                return await handler(request)
        if fallback is None:
            raise web.HTTPNotFound()
        return await fallback(request)

    return dispatch


def _register(ep: EntryPoint, core: Core, table: RouteTable) -> PluginContext:
    """Import and register one plugin and check what it declared; raises
    (having undone its model names) when it cannot be loaded."""
    register = ep.load()
    section = section_of(core.store.snapshot(), ep.name)
    api = PluginContext(core, ep.name, section if isinstance(section, dict) else {})
    register(api)
    if api._requires and not compatible(api._requires):
        raise RuntimeError(f"needs plugin API {api._requires}; this server provides "
                           f"{API_VERSION}")
    problems = settings_problems(api, section)
    if problems:
        raise ValueError("invalid settings: " + "; ".join(f"{k}: {v}"
                                                          for k, v in problems.items()))
    clash = table.clashes(api)
    if clash:
        raise ValueError(f"routes already served by another plugin: {', '.join(clash)}")
    done: list[str] = []
    try:
        for name, native, listed in api._names:
            core.models.register(name, native, listed=listed)
            done.append(name)
    except ValueError:
        for name in done:
            core.models.unregister(name)
        raise
    return api


def load_plugins(app: web.Application, core: Core, eps: list[EntryPoint] | None = None
                 ) -> list[PluginInfo]:
    """Load every plugin; a broken one is reported and skipped."""
    infos: list[PluginInfo] = []
    loaded: list[PluginContext] = []
    table = RouteTable()
    for ep in discover() if eps is None else eps:
        info = PluginInfo(name=ep.name, module=ep.value,
                          version=ep.dist.version if ep.dist else "")
        infos.append(info)
        try:
            api = _register(ep, core, table)
        except Exception as exc:  # a plugin must never take the server down
            info.error = redact(f"{type(exc).__name__}: {exc}")  # shown to admins
            log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, info.error)
            continue
        for method, path, handler, when, errors in api._routes:
            table.add(method, path, wrap_handler(handler, errors, core, api.name), when)
            info.routes.append(f"{method} {path}" + (" (conditional)" if when else ""))
        loaded.append(api)
        log.info("plugin %s %s loaded: %d routes", ep.name, info.version, len(info.routes))
    table.mount(app)
    app[PATH_CLAIMS] = [claim for api in loaded for claim in api._claims]
    _keep_settings_live(core, loaded)
    _run_lifecycle(app, loaded)
    return infos


def _keep_settings_live(core: Core, plugins: list[PluginContext]) -> None:
    """Every config write checks each plugin's section first (a bad value is
    a 400 naming its field) and then hands the new section to the plugin."""

    def check(doc: dict[str, Any]) -> None:
        for api in plugins:
            for where, problem in settings_problems(api, section_of(doc, api.name)).items():
                raise ConfigError(where, problem)

    def publish(_: object) -> None:
        doc = core.store.snapshot()
        for api in plugins:
            section = section_of(doc, api.name)
            if isinstance(section, dict) and changed_settings(api, section):
                log.info("plugin %s: settings changed", api.name)

    core.store.add_check(check)
    core.store.subscribe(publish)


def _run_lifecycle(app: web.Application, plugins: list[PluginContext]) -> None:
    startup: list[tuple[str, Hook]] = [(p.name, h) for p in plugins for h in p._startup]
    shutdown: list[tuple[str, Hook]] = [(p.name, h) for p in plugins for h in p._shutdown]

    async def on_startup(_: web.Application) -> None:
        await run_hooks(startup, "startup")

    async def on_shutdown(_: web.Application) -> None:
        await run_hooks(shutdown, "shutdown")

    if startup:
        app.on_startup.append(on_startup)
    if shutdown:
        app.on_shutdown.append(on_shutdown)
