"""Application assembly: core services, plugins, health, CORS (``cors``), admin.

``create_app`` builds the aiohttp application; ``start_server`` runs it on a
real port (tests, the CLI and the benchmarks all use it). Handlers are
cancelled when their client disconnects, so an abandoned request stops its
PoW solve and gives its account lease back at once. At shutdown, streams
still running after ``stream_grace`` seconds end with an in-band error (the
server is shutting down), and non-stream turns with that error as their
answer, before the server cuts what is left.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint

from aiohttp import web

from .body import ADMIN_BODY_BYTES
from .config_store import ConfigStore
from .config_leftovers import remove_leftover_temp_files
from .connections import GUARD, ConnectionGuard, GuardedSite, track_requests
from .core import Core
from .errors import ProxyError
from . import log_redaction, request_record
from .admin import setup as setup_admin
from .cors import add_cors_headers, admin_cross_site_guard, cors_preflight
from .plugin_api import PluginInfo, load_plugins
from .unmatched import unmatched_routes

log = logging.getLogger("ds2proxy")

CORE = web.AppKey("core", Core)
STREAM_GRACE = web.AppKey("stream_grace", float)
STREAM_TIMER = web.AppKey("stream_timer", list)
# How long streams may run on once a shutdown began, and how much longer the
# server then waits for their handlers to finish before it cancels them.
STREAM_GRACE_SECONDS = 50.0
HANDLER_GRACE_SECONDS = 10.0
PLUGINS = web.AppKey("plugins", list)
READY = web.AppKey("ready", dict)

async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[READY]
    link = request.app[CORE].link
    if state.get("ready") and link is not None and not link.ready:
        return web.json_response({"status": "not_ready", "reason": "redis is unreachable"},
                                 status=503)
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
    app[STREAM_TIMER] = []
    app.on_shutdown.append(end_streams_before_exit)
    app.on_cleanup.append(_cancel_stream_timer)
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
        """The URL it serves; an IPv6 address goes in brackets (RFC 3986)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def end_streams_before_exit(app: web.Application) -> None:
    """Shutdown began: streams may run on for the grace period, then the ones
    left end with an in-band 503 (a cut connection reads as a network fault),
    and non-stream turns and requests still waiting for an account get a
    plain one."""
    core = app[CORE]
    grace = app.get(STREAM_GRACE, STREAM_GRACE_SECONDS)
    app[STREAM_TIMER].append(asyncio.get_running_loop().call_later(grace, _end_streams, core))


def end_streams_now(app: web.Application) -> int:
    """Cut the grace short (a second Ctrl-C): the streams still running end
    in-band now, and requests waiting for an account get their 503."""
    for handle in app[STREAM_TIMER]:
        handle.cancel()
    return _end_streams(app[CORE])


def _shutting_down() -> ProxyError:
    return ProxyError("the server is shutting down", status=503, code="server_shutting_down")


def _end_streams(core: Core) -> int:
    core.pool.close_queue(_shutting_down)
    ended = core.streams.stop_all(_shutting_down)
    if ended:
        log.warning("shutting down: ended %d stream(s) still running", ended)
    return ended


async def _cancel_stream_timer(app: web.Application) -> None:
    for handle in app[STREAM_TIMER]:
        handle.cancel()


async def start_server(app: web.Application, host: str = "127.0.0.1", port: int = 0, *,
                       stream_grace: float = STREAM_GRACE_SECONDS) -> RunningServer:
    """Serve ``app`` on a real port (0 picks a free one). An app from
    :func:`create_app` gets the connection cap and client timeouts of its
    ``server`` settings (they need its request-tracking middleware), and
    ends its streams ``stream_grace`` seconds into a shutdown."""
    guard = app.get(GUARD)
    limits = {} if guard is None else {
        "keepalive_timeout": guard.settings.keepalive_timeout_seconds}
    if CORE in app:
        app[STREAM_GRACE] = stream_grace
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=stream_grace + HANDLER_GRACE_SECONDS, **limits)
    await runner.setup()
    site = (web.TCPSite(runner, host, port) if guard is None
            else GuardedSite(runner, host, port, guard))
    try:
        await site.start()
    except BaseException:  # a port in use: what start-up began is closed again
        await runner.cleanup()
        raise
    sockets = site._server.sockets if site._server else []
    bound = sockets[0].getsockname()[1] if sockets else port
    return RunningServer(runner, host, bound)
