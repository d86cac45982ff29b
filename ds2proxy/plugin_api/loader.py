"""Loading plugins: entry points, the API version, routes, names, hooks and
settings kept live.

A plugin that fails to import (even by ``SystemExit``), to register, to
match the API version, or whose settings or routes or model names clash
(with another plugin's, or a route with the server's own paths), or whose
route aiohttp cannot mount, is reported (log and ``/admin/plugins``) and
leaves nothing behind; the server still starts. A start-up or shut-down hook
that fails, exits or hangs past ``HOOK_SECONDS`` is logged and left behind.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config import ConfigError
from ..config_fields import shortened, suggestion
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
# Paths the server serves itself (and everything under /admin/): a plugin's
# route on one would hide the server's (or never run), so it is refused.
SERVER_PATHS = frozenset({"/", "/admin", "/metrics", "/healthz", "/readyz"})
# Longest a plugin's start-up or shut-down hook may take before it is left behind.
HOOK_SECONDS = 30.0
ENABLED = "enabled"  # plugins.<name>.enabled: false leaves the plugin unloaded (at start)


@dataclass
class PluginInfo:
    """What /admin/plugins reports: name, version, routes, or the load error."""

    name: str
    module: str
    version: str = ""
    routes: list[str] = field(default_factory=list)
    error: str = ""
    disabled: bool = False  # plugins.<name>.enabled is false: not loaded, on purpose

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
    """``plugins.<name>`` as the plugin sees it: the server's own ``enabled``
    switch is not the plugin's setting."""
    plugins = doc.get("plugins")
    section = plugins.get(name, {}) if isinstance(plugins, dict) else {}
    if isinstance(section, dict) and ENABLED in section:
        return {k: v for k, v in section.items() if k != ENABLED}
    return section


def enabled(doc: Mapping[str, Any], name: str) -> bool:
    """``plugins.<name>.enabled`` (default true); ConfigError when not a boolean."""
    plugins = doc.get("plugins")
    section = plugins.get(name) if isinstance(plugins, dict) else None
    value = section.get(ENABLED, True) if isinstance(section, dict) else True
    if not isinstance(value, bool):
        raise ConfigError(f"plugins.{name}.{ENABLED}", "must be true or false")
    return value


def settings_problems(api: PluginContext, section: Any) -> dict[str, str]:
    """``plugins.<name>.<field>`` → problem, for a candidate section."""
    where = f"plugins.{api.name}"
    if not isinstance(section, dict):
        return {where: "must be an object"}
    if api._check is None:
        return {}
    try:
        problems = api._check(section) or {}
        if not isinstance(problems, Mapping):
            raise TypeError(f"it returned a {type(problems).__name__}, not "
                            "{field: problem}")
    except Exception as exc:  # the plugin's fault, not the server's: a 400 naming it
        log.exception("plugin %s: settings check failed", api.name)
        return {where: f"the plugin's settings check failed ({type(exc).__name__}); see the "
                       "server log"}
    # A check may quote the value it refuses: never a secret back to the admin.
    return {f"{where}.{key}": redact(without_secrets(str(problem), section))
            for key, problem in problems.items()}


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
    returned = register(api)
    if inspect.iscoroutine(returned):  # never run: it would have registered nothing
        returned.close()
        raise TypeError(f"{ep.value} is a coroutine function; register(api) must be a plain "
                        "function (start-up work belongs in api.on_startup)")
    if api._requires and not compatible(api._requires):
        raise RuntimeError(f"needs plugin API {api._requires}; this server provides "
                           f"{API_VERSION}")
    problems = settings_problems(api, section)
    if problems:
        raise ValueError("invalid settings: " + "; ".join(f"{k}: {v}"
                                                          for k, v in problems.items()))
    _check_routes(api)
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


def _check_routes(api: PluginContext) -> None:
    """Each route is one aiohttp can mount, none is the server's own, and
    none is declared twice without a ``when`` (the second would never run)."""
    scratch = web.UrlDispatcher()
    seen: set[tuple[str, str]] = set()
    for method, path, handler, when, _ in api._routes:
        if path in SERVER_PATHS or path.startswith("/admin/"):
            raise ValueError(f"route {method} {path} is the server's own path")
        if when is None:
            if (method, path) in seen:
                raise ValueError(f"route {method} {path} is declared twice")
            seen.add((method, path))
        try:
            scratch.add_route(method, path, handler)
        except ValueError as exc:
            raise ValueError(f"route {method} {path!r} cannot be served: {exc}") from None


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
            if not enabled(core.store.snapshot(), ep.name):
                info.disabled, info.error = True, f"disabled (plugins.{ep.name}.enabled is false)"
                log.info("plugin %s is disabled by the config", ep.name)
                continue
            api = _register(ep, core, table)
        except (Exception, SystemExit) as exc:  # a plugin must never take the server down
            info.error = redact(f"{type(exc).__name__}: {exc}")  # shown to admins
            log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, info.error)
            continue
        for method, path, handler, when, errors in api._routes:
            table.add(method, path, wrap_handler(handler, errors, core, api.name), when)
            info.routes.append(f"{method} {path}" + (" (conditional)" if when else ""))
        loaded.append(api)
        log.info("plugin %s %s loaded: %d routes", ep.name, info.version, len(info.routes))
    table.mount(app)
    _warn_unknown_sections(core.store.snapshot(), [info.name for info in infos])
    app[PATH_CLAIMS] = [claim for api in loaded for claim in api._claims]
    _keep_settings_live(core, loaded)
    _run_lifecycle(app, loaded)
    return infos


def _warn_unknown_sections(doc: Mapping[str, Any], names: list[str]) -> None:
    """A ``plugins.<name>`` no installed plugin reads (``olama`` for
    ``ollama``) is named at start, as misspelt core fields are."""
    sections = doc.get("plugins")
    for name in sections if isinstance(sections, dict) else ():
        if name in names or str(name).startswith("_"):
            continue
        path = f"plugins.{name}"
        close = suggestion(path, [f"plugins.{n}" for n in names])
        hint = f" (did you mean '{close}'?)" if close else ""
        log.warning("config field '%s': no plugin of that name is installed%s; its settings "
                    "are ignored", shortened(path), hint)


def _keep_settings_live(core: Core, plugins: list[PluginContext]) -> None:
    """Every config write checks each plugin's section first (a bad value is
    a 400 naming its field) and then hands the new section to the plugin."""

    def check(doc: dict[str, Any]) -> None:
        sections = doc.get("plugins")
        for name in sections if isinstance(sections, dict) else ():
            enabled(doc, name)
        for api in plugins:
            for where, problem in settings_problems(api, section_of(doc, api.name)).items():
                raise ConfigError(where, problem)

    def publish(_: object) -> None:
        doc = core.store.snapshot_of("plugins")  # not a copy of every account per write
        for api in plugins:
            section = section_of(doc, api.name)
            if isinstance(section, dict) and changed_settings(api, section):
                log.info("plugin %s: settings changed", api.name)

    core.store.add_check(check)
    core.store.subscribe(publish)


def _bounded(name: str, hook: Hook, what: str) -> Hook:
    """``hook`` given at most HOOK_SECONDS, its SystemExit a failure like any
    other: one plugin's hook that never returns (or exits) must not keep the
    server from starting or from shutting down."""

    async def caught() -> SystemExit | None:
        try:  # inside the task wait_for makes: a SystemExit leaving it stops the loop
            await hook()
        except SystemExit as exc:
            return exc
        return None

    async def run() -> None:
        try:
            exited = await asyncio.wait_for(caught(), HOOK_SECONDS)
        except TimeoutError:
            log.error("plugin %s: %s hook gave no answer in %g s; going on without it",
                      name, what, HOOK_SECONDS)
            return
        if exited is not None:
            log.error("plugin %s: %s hook failed: SystemExit: %s", name, what, exited)

    return run


def _run_lifecycle(app: web.Application, plugins: list[PluginContext]) -> None:
    startup: list[tuple[str, Hook]] = [(p.name, _bounded(p.name, h, "startup"))
                                       for p in plugins for h in p._startup]
    shutdown: list[tuple[str, Hook]] = [(p.name, _bounded(p.name, h, "shutdown"))
                                        for p in plugins for h in p._shutdown]

    async def on_startup(_: web.Application) -> None:
        await run_hooks(startup, "startup")

    async def on_shutdown(_: web.Application) -> None:
        await run_hooks(shutdown, "shutdown")

    if startup:
        app.on_startup.append(on_startup)
    if shutdown:
        app.on_shutdown.append(on_shutdown)
