"""The JSON admin API's route table (paths as in the admin API spec)."""

from __future__ import annotations

from aiohttp import web

from .api_access import AccessAPI
from .api_accounts import AccountsAPI
from .api_config import ConfigAPI
from .api_providers import ProvidersAPI
from .api_status import StatusAPI
from .api_usage import add_usage_routes
from .context import AdminContext
from .responses import Handler, rendered


def guarded(ctx: AdminContext, handler: Handler) -> Handler:
    """Admin auth first, then the handler; errors rendered as ``{"detail"}``."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        await ctx.gate.require(request)
        return await handler(request)

    return rendered(wrapped)


def add_api_routes(app: web.Application, ctx: AdminContext) -> None:
    access, config = AccessAPI(ctx), ConfigAPI(ctx)
    accounts, status = AccountsAPI(ctx), StatusAPI(ctx)
    providers = ProvidersAPI(ctx)
    router = app.router
    router.add_post("/admin/login", rendered(access.login))
    router.add_get("/admin/verify", rendered(access.verify))
    table: list[tuple[str, str, Handler]] = [
        ("GET", "/admin/config", config.get_config),
        ("POST", "/admin/config", config.post_config),
        ("GET", "/admin/settings", config.get_settings),
        ("PUT", "/admin/settings", config.put_settings),
        ("POST", "/admin/settings/password", access.change_password),
        ("POST", "/admin/config/import", config.import_config),
        ("GET", "/admin/config/export", config.export_full),
        ("GET", "/admin/export", config.export_text),
        ("DELETE", "/admin/keys/{key}", config.delete_key),
        ("POST", "/admin/import", config.batch_import),
        ("GET", "/admin/accounts", accounts.listing),
        ("POST", "/admin/accounts", accounts.add),
        ("DELETE", "/admin/accounts/{identifier}", accounts.delete),
        ("POST", "/admin/accounts/test", accounts.test_one),
        ("POST", "/admin/accounts/test-all", accounts.test_all),
        ("POST", "/admin/accounts/{identifier}/{action:disable|enable|reset}", accounts.health),
        ("PUT", "/admin/accounts/{identifier}/proxy", accounts.set_proxy),
        ("GET", "/admin/queue/status", accounts.queue_status),
        ("POST", "/admin/test", accounts.self_test),
        ("GET", "/admin/providers", providers.listing),
        ("POST", "/admin/providers", providers.add),
        ("GET", "/admin/providers/{name}", providers.one),
        ("PUT", "/admin/providers/{name}", providers.update),
        ("DELETE", "/admin/providers/{name}", providers.delete),
        ("POST", "/admin/providers/{name}/test", providers.test),
        ("GET", "/admin/overview", status.overview),
        ("GET", "/admin/plugins", status.plugins),
        ("GET", "/admin/plugins/{name}/settings", status.plugin_settings),
        ("PUT", "/admin/plugins/{name}/settings", status.put_plugin_settings),
        ("GET", "/admin/dev/captures", status.captures),
        ("DELETE", "/admin/dev/captures", status.clear_captures),
    ]
    for method, path, handler in table:
        if method == "GET":  # HEAD too, as every GET route of the server answers it
            router.add_get(path, guarded(ctx, handler))
        else:
            router.add_route(method, path, guarded(ctx, handler))
    usage = add_usage_routes(app, ctx, guarded)
    router.add_post("/admin/keys", guarded(ctx, usage.add_key))
