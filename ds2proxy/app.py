"""Application assembly: core services, plugins, health, CORS (``cors``), admin.

``create_app`` builds the aiohttp application; ``start_server`` runs it on a
real port (tests, the CLI and the benchmarks all use it). Handlers are
cancelled when their client disconnects, so an abandoned request stops its
PoW solve and gives its account lease back at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint

from aiohttp import web

from .body import ADMIN_BODY_BYTES
from .config_store import ConfigStore
from .config_leftovers import remove_leftover_temp_files
from .connections import GUARD, ConnectionGuard, GuardedSite, track_requests
from .core import Core
from . import log_redaction, request_record
from .admin import setup as setup_admin
from .cors import add_cors_headers, admin_cross_site_guard, cors_preflight
from .plugin_api import PluginInfo, load_plugins
from .unmatched import unmatched_routes

log = logging.getLogger("ds2proxy")

CORE = web.AppKey("core", Core)
PLUGINS = web.AppKey("plugins", list)
READY = web.AppKey("ready", dict)

async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[READY]
    if state.get("ready"):
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "not_ready", "reason": state.get("reason", "starting")},
                             status=503)


def create_app(store: ConfigStore, *, admin_key: str | None = None,
               plugins: list[EntryPoint] | None = None) -> web.Application:
    """The application; ``plugins``: the entry points to load (default: the installed ones)."""
    if store.path is not None:
        remove_leftover_temp_files(store.path)
    core = Core(store)
    # API bodies are read by Core.read_json under runtime.max_body_bytes;
    # aiohttp's own limit covers only the dashboard's forms.
    app = web.Application(client_max_size=ADMIN_BODY_BYTES,
                          middlewares=[request_record.request_ids, track_requests,
                                       admin_cross_site_guard, cors_preflight,
                                       unmatched_routes])
    app[CORE] = core
    app[GUARD] = ConnectionGuard(store.config.server)
    app[READY] = {"ready": False, "reason": "starting"}
    app.cleanup_ctx.append(core.lifetime)
    app.on_response_prepare.append(add_cors_headers)
    app.on_response_prepare.append(request_record.on_prepare)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    infos: list[PluginInfo] = load_plugins(app, core, plugins)
    app[PLUGINS] = infos
    setup_admin(app, core, admin_key, infos)

    async def mark_ready(app: web.Application) -> None:
        loaded = [p for p in infos if p.loaded]
        app[READY].update(ready=bool(loaded),
                          reason="" if loaded else "no dialect plugin could be loaded")

    app.on_startup.append(mark_ready)
    # After the plugins are imported, so their loggers are guarded too.
    log_redaction.install()
    return app


@dataclass
class RunningServer:
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_server(app: web.Application, host: str = "127.0.0.1", port: int = 0
                       ) -> RunningServer:
    """Serve ``app`` on a real port (0 picks a free one). An app from
    :func:`create_app` gets the connection cap and client timeouts of its
    ``server`` settings (they need its request-tracking middleware)."""
    guard = app.get(GUARD)
    limits = {} if guard is None else {
        "keepalive_timeout": guard.settings.keepalive_timeout_seconds}
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, **limits)
    await runner.setup()
    site = (web.TCPSite(runner, host, port) if guard is None
            else GuardedSite(runner, host, port, guard))
    await site.start()
    sockets = site._server.sockets if site._server else []
    bound = sockets[0].getsockname()[1] if sockets else port
    return RunningServer(runner, host, bound)
