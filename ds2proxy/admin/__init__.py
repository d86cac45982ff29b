"""The admin API and the dashboard.

:func:`setup` is called by :func:`ds2proxy.app.create_app` (this package
never imports the app module: no cycle). It mounts the
JSON admin API under ``/admin/*`` (paths of the admin API spec), the
server-rendered dashboard under ``/admin/`` and ``/admin/ui/*`` with its
assets under ``/admin/static/``. The dev-capture buffer it lists is the
core's (``core.captures``), which the upstream client feeds.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from ..config_store import FILE
from ..private_files import warn_if_exposed
from .assets import asset_handler, static_dir
from .context import AdminContext
from .credentials import AdminCredentials
from .dashboard import Dashboard, setup_templates
from .forms import Forms
from .gate import AdminGate
from .operations import AdminOps
from .pages import Pages
from .playground import Playground
from .provider_pages import ProviderPages
from .routes import add_api_routes, guarded
from .throttle import LoginThrottle
from .usage_pages import add_usage_pages
from .web_session import WebSessions
from ..state.errors import StateUnavailable

if TYPE_CHECKING:
    from ..core import Core
    from ..plugin_api import PluginInfo

log = logging.getLogger("ds2proxy.admin")

ADMIN = web.AppKey("ds2proxy_admin", AdminContext)


def _warn_default_key(creds: AdminCredentials) -> None:
    if creds.default_key_in_use:
        log.warning("!" * 72)
        log.warning("!! The admin key is the default 'admin'. Anyone who can reach this")
        log.warning("!! server can administer it. Set DS2PROXY_ADMIN_KEY or a password.")
        log.warning("!" * 72)


def _state_errors_as_pages(dash: Dashboard) -> web.middleware:
    """A dashboard page that needs the shared store while it is unreachable
    (the usage charts, the request log) is a 503 page, not a server error."""

    @web.middleware
    async def middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except StateUnavailable as exc:
            if not request.path.startswith("/admin"):
                raise
            return dash.refused(request, exc)

    return middleware


def _add_dashboard(app: web.Application, ctx: AdminContext) -> None:
    setup_templates(app)
    dash = Dashboard(ctx)
    usage = add_usage_pages(app, ctx, dash)
    pages = Pages(ctx, dash, usage)
    forms = Forms(ctx, dash, pages)
    router = app.router
    app.middlewares.append(_state_errors_as_pages(dash))
    router.add_get("/admin/static/{name}", asset_handler(static_dir()), name="admin_static")
    router.add_get("/", pages.root)
    router.add_get("/admin", pages.root)
    router.add_get("/admin/", pages.overview)
    router.add_get("/admin/ui/login", pages.login_form)
    router.add_post("/admin/ui/login", pages.login)
    for path, handler in (
        ("accounts", pages.accounts), ("keys", usage.keys), ("settings", pages.settings),
        ("config", pages.config), ("config/download", pages.download),
        ("playground", pages.playground), ("captures", pages.captures),
        ("plugins", pages.plugins),
    ):
        router.add_get(f"/admin/ui/{path}", handler)
    for path, back, handler in forms.table():
        router.add_post(f"/admin/ui/{path}", dash.action(back, handler))
    router.add_post("/admin/ui/playground/send", guarded(ctx, Playground(ctx).send))
    providers = ProviderPages(ctx, dash)
    router.add_get("/admin/ui/providers", providers.page)
    for path, back, handler in providers.forms():
        router.add_post(f"/admin/ui/{path}", dash.action(back, handler))


def setup(app: web.Application, core: Core, admin_key: str | None,
          plugins: list[PluginInfo]) -> None:
    """Mount the admin API and the dashboard on ``app`` (``plugins``: what
    the plugin loader reported, for /admin/plugins)."""
    creds = AdminCredentials(core.store, admin_key, records=core.state)
    sessions = WebSessions(creds)
    captures = core.captures
    ctx = AdminContext(core=core, ops=AdminOps(core, creds, captures, plugins),
                       creds=creds, gate=AdminGate(creds, LoginThrottle(), sessions),
                       sessions=sessions, captures=captures)
    app[ADMIN] = ctx
    add_api_routes(app, ctx)
    _add_dashboard(app, ctx)
    _warn_default_key(creds)
    if core.store.source == FILE and core.store.path is not None:
        warn_if_exposed(core.store.path)

    async def prepare(app: web.Application) -> None:
        if core.link is not None:  # Redis away at start: the secret is made once it answers
            core.link.on_up(creds.ensure_secret)
        await creds.ensure_secret()
        await creds.load_logouts()

    app.on_startup.append(prepare)
