"""Dashboard pages for keys and usage: the key list (a created key's secret
shown once), one key's page (usage over time, limits and how close it is),
the request log (filters, pages, a row's details) and the overview charts."""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web

from ..errors import ProxyError
from ..keyring import MAX_LIMIT
from ..state.usage import FILTERS
from .api_usage import UsageAPI, by_key, filters_of, page_args, row_id, whole_number
from .charts import DAY, HOUR, OVERVIEW_METRICS, charts_for
from .context import AdminContext
from .credentials import Claims
from .dashboard import Dashboard, Form
from .edits import find_entry
from .form_snapshot import edited, snapshot
from .masking import key_id
from .named_keys import edit_key
from .web_session import public_origin

LOG_URL = "/admin/ui/usage"
KEYS_URL = "/admin/ui/keys"


# A key's lifetime in days (a century at most: a longer one is never expiring).
MAX_EXPIRES_DAYS = 36500
LIMITS = ("rpm", "tokens_per_day", "concurrent")
SHOWN_FIELD = "shown"  # the edit form's snapshot of what it showed


def _int_field(form: Form, name: str, hi: int) -> int | None:
    if not str(form.get(name) or "").strip():
        return None
    return whole_number(form.get(name), name, 0, 0, hi)


def key_body(form: Form) -> dict[str, Any]:
    """A create-key form as the admin API's body."""
    days = _int_field(form, "expires_days", MAX_EXPIRES_DAYS)
    models = [m.strip() for m in str(form.get("models") or "").replace(",", "\n").splitlines()
              if m.strip()]
    limits = {name: _int_field(form, name, MAX_LIMIT) for name in LIMITS}
    body: dict[str, Any] = {"name": str(form.get("name") or "").strip(),
                            "note": str(form.get("note") or "").strip(),
                            "limits": {k: v for k, v in limits.items() if v is not None}}
    if models:
        body["models"] = models
    if days:
        body["expires"] = round(time.time() + days * 86400)
    return body


def shown_key(view: dict[str, Any]) -> str:
    """The edit form's snapshot of the key as the page shows it."""
    return snapshot({"note": view["note"], "models": list(view["models"]),
                     **{name: view["limits"][name] or 0 for name in LIMITS}})


def key_changes(form: Form) -> tuple[dict[str, Any], dict[str, int]]:
    """What the edit form changed, against what its page showed: the key's
    fields, and its limits apart (merged into the stored ones when written,
    so a limit another admin set since the page loaded stays)."""
    body = edit_body(form)
    changed = edited({"note": body["note"], "models": body["models"] or [], **body["limits"]},
                     str(form.get(SHOWN_FIELD) or ""))
    fields = {name: body[name] for name in ("note", "models") if name in changed}
    if "expires" in body:
        fields["expires"] = body["expires"]
    return fields, {name: body["limits"][name] for name in LIMITS if name in changed}


def edit_body(form: Form) -> dict[str, Any]:
    """An edit-key form: blank limits mean unlimited, blank models mean all,
    an expiry of 0 days means never (blank keeps the one it has)."""
    body = key_body(form)
    body.pop("name")
    if _int_field(form, "expires_days", MAX_EXPIRES_DAYS) == 0:
        body["expires"] = 0
    body["limits"] = {name: body["limits"].get(name, 0) for name in LIMITS}
    body.setdefault("models", None)
    return body


class UsagePages:
    def __init__(self, ctx: AdminContext, dash: Dashboard) -> None:
        self.ctx = ctx
        self.dash = dash
        self.api = UsageAPI(ctx)

    async def _series(self, window: Any, key_ref: str | None = None) -> list[dict[str, Any]]:
        store = self.ctx.core.usage.store
        if store is None:
            return []
        return await store.series(window.grain, time.time() - window.span, key_ref=key_ref)

    async def charts(self, key_ref: str | None = None) -> list[dict[str, Any]]:
        """The overview's charts, or one key's (by ref: across its renames)."""
        now = time.time()
        out = []
        for window in (HOUR, DAY):
            out += charts_for(await self._series(window, key_ref), window, now,
                              OVERVIEW_METRICS)
        return out

    # -- keys ------------------------------------------------------------------------------

    def keys_page(self, request: web.Request, claims: Claims, created: dict | None = None
                  ) -> web.Response:
        return self.dash.render(request, "keys.html", claims=claims, active="keys",
                                keys=self.api.keys_view(), created=created,
                                origin=public_origin(request))

    async def keys(self, request: web.Request) -> web.StreamResponse:
        claims = self.dash.session(request)
        await self.api.refresh()
        return self.keys_page(request, claims)

    async def create_key(self, request: web.Request, claims: Claims, form: Form
                         ) -> web.StreamResponse:
        """Answer with the page itself, not a redirect: the secret is in this one
        response only, never in a cookie or a later page."""
        created = await self.api.create(key_body(form))
        return self.keys_page(request, claims, created)

    async def toggle_key(self, request: web.Request, claims: Claims, form: Form
                         ) -> web.StreamResponse:
        wanted = str(form.get("key_id") or "")
        disable = form.get("disabled") == "1"
        await self.ctx.ops.write(lambda data: edit_key(data, wanted, {"disabled": disable}))
        return self.dash.back(request, KEYS_URL, "success",
                              "Key disabled." if disable else "Key enabled.")

    async def edit_key(self, request: web.Request, claims: Claims, form: Form
                       ) -> web.StreamResponse:
        wanted = str(form.get("key_id") or "")
        fields, limits = key_changes(form)

        def edit(data: dict[str, Any]) -> None:
            body = dict(fields)
            if limits:
                found = find_entry(data.get("keys") or [], wanted)
                stored = found.get("limits") if isinstance(found, dict) else None
                body["limits"] = {**(stored if isinstance(stored, dict) else {}), **limits}
            edit_key(data, wanted, body)

        await self.ctx.ops.write(edit)
        page = f"{KEYS_URL}/{wanted}" if re.fullmatch(r"[0-9a-f]{12}", wanted) else KEYS_URL
        return self.dash.back(request, page, "success", "Key saved.")

    async def key_page(self, request: web.Request) -> web.StreamResponse:
        claims = self.dash.session(request)
        wanted = request.match_info["key_id"]
        key = next((k for k in self.ctx.core.config.keys
                    if key_id(k.secret) == wanted), None)
        if key is None:
            raise web.HTTPNotFound()
        await self.api.refresh()
        view = next(k for k in self.api.keys_view() if k["id"] == wanted)
        recent = await self._recent({"key_ref": key.ref}, 20)
        return self.dash.render(request, "key.html", claims=claims, active="keys", key=view,
                                shown=shown_key(view), charts=await self.charts(key.ref),
                                recent=recent)

    async def _recent(self, filters: dict[str, Any], limit: int, offset: int = 0
                      ) -> tuple[list[dict[str, Any]], int]:
        store = self.ctx.core.usage.store
        if store is None:
            return [], 0
        return await store.requests(filters, limit, offset)

    # -- request log -------------------------------------------------------------------------

    async def log(self, request: web.Request) -> web.StreamResponse:
        claims = self.dash.session(request)
        try:
            page, per_page = page_args(request.query)
            filters = by_key(filters_of(request.query), self.ctx.core.config.keys)
        except ProxyError:
            page, per_page, filters = 1, 50, {}
        rows, total = await self._recent(filters, per_page, (page - 1) * per_page)
        shown = {k: request.query.get(k, "") for k in (*FILTERS, "errors")}
        return self.dash.render(request, "usage.html", claims=claims, active="usage",
                                rows=rows, total=total, page=page, per_page=per_page,
                                pages=max(1, -(-total // per_page)), filters=shown,
                                enabled=self.ctx.core.config.usage.enabled,
                                query={k: v for k, v in shown.items() if v})

    async def detail(self, request: web.Request) -> web.StreamResponse:
        claims = self.dash.session(request)
        wanted = row_id(request.match_info["row_id"])
        store = self.ctx.core.usage.store
        row = await store.request(wanted) if store is not None and wanted is not None else None
        if row is None:
            raise web.HTTPNotFound()
        return self.dash.render(request, "usage_detail.html", claims=claims, active="usage",
                                row=row)

    async def per_account(self) -> dict[str, dict[str, Any]]:
        """Requests, failures and tokens per account over the last day."""
        store = self.ctx.core.usage.store
        if store is None:
            return {}
        rows = await store.totals("account", "hour", time.time() - 86400)
        return {r["name"]: r for r in rows if r["name"]}


def add_usage_pages(app: web.Application, ctx: AdminContext, dash: Dashboard) -> UsagePages:
    pages = UsagePages(ctx, dash)
    router = app.router
    router.add_get("/admin/ui/usage", pages.log)
    router.add_get("/admin/ui/usage/{row_id}", pages.detail)
    router.add_get("/admin/ui/keys/{key_id}", pages.key_page)
    router.add_post("/admin/ui/keys/create", dash.action(KEYS_URL, pages.create_key))
    router.add_post("/admin/ui/keys/toggle", dash.action(KEYS_URL, pages.toggle_key))
    router.add_post("/admin/ui/keys/edit", dash.action(KEYS_URL, pages.edit_key))
    return pages

