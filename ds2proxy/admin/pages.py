"""The dashboard's pages (GET) and its login / logout."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import markupsafe
from aiohttp import web

from ..body import read_form, too_large
from ..errors import ProxyError
from . import settings
from .context import LOGIN_BODY_BYTES, AdminContext
from .credentials import Claims
from .dashboard import HOME_URL, Dashboard, Form, pretty_json, safe_next
from .masking import masked_key
from .operations import VIEW_IN_THREAD_ACCOUNTS
from .playground import FAMILIES

if TYPE_CHECKING:
    from .usage_pages import UsagePages

ACCOUNTS_PAGE_SIZE = 20


async def read_login_form(request: web.Request) -> Form:
    """The login form, read before anyone is known: a few kilobytes at most,
    so a stranger cannot make the server parse megabytes of it."""
    if (request.content_length or 0) > LOGIN_BODY_BYTES:
        raise too_large(LOGIN_BODY_BYTES)
    return await read_form(request, LOGIN_BODY_BYTES)


class Pages:
    def __init__(self, ctx: AdminContext, dash: Dashboard, usage: UsagePages) -> None:
        self.ctx = ctx
        self.dash = dash
        self.ops = ctx.ops
        self.usage = usage

    # -- login / logout ---------------------------------------------------------------

    def _login_page(self, request: web.Request, *, error: str = "", status: int = 200,
                    back: str | None = None) -> web.Response:
        """``back``: where a refused login form was headed (the page asked
        for before it), kept for the next try."""
        token = self.ctx.sessions.login_token(request)
        target = safe_next(back if back is not None else request.query.get("next"))
        response = self.dash.render(request, "login.html", status=status, login_token=token,
                                    error=error, next=target)
        self.ctx.sessions.keep_login_token(request, response, token)
        return response

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if self.ctx.sessions.current(request) is not None:
            raise web.HTTPSeeOther(safe_next(request.query.get("next")))
        return self._login_page(request)

    async def login(self, request: web.Request) -> web.StreamResponse:
        try:
            form = await read_login_form(request)
            self.ctx.sessions.check_login_token(request, str(form.get("login_token", "")))
        except ProxyError as exc:
            return self.dash.refused(request, exc)
        try:
            # Trimmed as the JSON login trims it: no key or password begins
            # or ends with a space, and a pasted one often brings a line break.
            await self.ctx.gate.check_key(request, str(form.get("admin_key", "")).strip())
        except ProxyError as exc:
            page = self._login_page(request, error=exc.message, status=exc.status,
                                    back=str(form.get("next") or ""))
            if exc.retry_after:
                page.headers["Retry-After"] = str(exc.retry_after)
            return page
        target = safe_next(str(form.get("next") or ""))
        response = web.Response(status=303, headers={"Location": target})
        self.ctx.sessions.start(request, response)
        return response

    # -- pages --------------------------------------------------------------------------

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(HOME_URL)

    async def overview(self, request: web.Request) -> web.StreamResponse:
        claims = self.dash.session(request)
        return self.dash.render(request, "overview.html", claims=claims, active="overview",
                                data=self.ops.overview(), charts=await self.usage.charts())

    async def accounts(self, request: web.Request) -> web.StreamResponse:
        claims = self.dash.session(request)
        query = request.query.get("q", "")
        try:
            listing = self.ops.accounts_page(request.query.get("page"), ACCOUNTS_PAGE_SIZE, query)
        except ProxyError:
            listing = self.ops.accounts_page(1, ACCOUNTS_PAGE_SIZE, query)
        return self.dash.render(request, "accounts.html", claims=claims, active="accounts",
                                listing=listing, query=query, tests=self.ops.last_tests,
                                here=request.rel_url.raw_path_qs,
                                usage=await self.usage.per_account())

    def settings_page(self, request: web.Request, claims: Claims, *,
                      values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                      status: int = 200, shown: str | None = None) -> web.Response:
        """``shown``: the snapshot the form was first loaded with (kept when a
        failed save comes back, so the next save still knows the originals)."""
        cfg = self.ctx.core.config
        current = settings.flat_values(cfg)
        texts = {p: settings.map_text(v) if p in settings.MAPS else v for p, v in current.items()}
        return self.dash.render(request, "settings.html", claims=claims, active="settings",
                                status=status, groups=settings.form_groups(cfg),
                                values={**texts, **(values or {})}, errors=errors or {},
                                shown=shown or settings.shown_snapshot(cfg),
                                info=self.ops.settings_view()["admin"])

    async def settings(self, request: web.Request) -> web.StreamResponse:
        return self.settings_page(request, self.dash.session(request))

    async def config_page(self, request: web.Request, claims: Claims, *, status: int = 200,
                          text: str = "", mode: str = "merge", error: str = "") -> web.Response:
        return self.dash.render(request, "config.html", claims=claims, active="config",
                                status=status, masked=await self._masked_text(), text=text,
                                mode=mode, error=error)

    async def _masked_text(self) -> markupsafe.Markup:
        """The masked config as escaped, indented JSON: in a worker thread with
        many accounts (thousands held the loop for tens of ms)."""
        def build() -> markupsafe.Markup:
            return markupsafe.escape(pretty_json(self.ops.config_view()))

        if len(self.ctx.core.config.accounts) < VIEW_IN_THREAD_ACCOUNTS:
            return build()
        return await asyncio.to_thread(build)

    async def config(self, request: web.Request) -> web.StreamResponse:
        return await self.config_page(request, self.dash.session(request))

    async def playground(self, request: web.Request) -> web.StreamResponse:
        claims = self.dash.session(request)
        models = [m.id for m in self.ctx.core.models.natives()]
        return self.dash.render(request, "playground.html", claims=claims, active="playground",
                                families=FAMILIES, models=models,
                                keys=[masked_key(k) for k in self.ctx.core.config.key_secrets])

    async def captures(self, request: web.Request) -> web.StreamResponse:
        claims = self.dash.session(request)
        return self.dash.render(request, "captures.html", claims=claims, active="captures",
                                captures=self.ops.captures_view())

    async def plugins(self, request: web.Request) -> web.StreamResponse:
        claims = self.dash.session(request)
        return self.dash.render(request, "plugins.html", claims=claims, active="plugins",
                                plugins=self.ops.plugin_list())

    async def download(self, request: web.Request) -> web.StreamResponse:
        """The full config as a file: JSON, or base64 for DS2PROXY_CONFIG_JSON."""
        self.dash.session(request)
        exported = self.ops.export()
        as_base64 = request.query.get("format") == "base64"
        name = "config.base64.txt" if as_base64 else "config.json"
        body = exported["base64"] if as_base64 else exported["json"] + "\n"
        return web.Response(text=body, content_type="text/plain" if as_base64
                            else "application/json", headers={
                                "Content-Disposition": f'attachment; filename="{name}"',
                                "Cache-Control": "no-store"})
