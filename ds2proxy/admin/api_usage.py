"""Named keys, usage and ``/metrics`` for the admin.

``GET/POST /admin/keys``, ``PATCH /admin/keys/{key}``; ``GET /admin/usage``
(totals and per-minute/hour series), ``/admin/usage/requests`` (the request
log, newest first, filtered and paginated) and ``/admin/usage/requests/{id}``;
``GET /metrics`` (the admin key, an admin JWT, or ``metrics.token``).
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from ..errors import InvalidRequest, NotFound
from ..keyring import KeyConfig
from ..metrics import CONTENT_TYPE
from ..state.usage import FILTERS, GROUPS, UsageStore
from .context import AdminContext
from .edits import clean_key
from .gate import bearer_of
from .named_keys import create_key, edit_key, key_view, new_secret
from .masking import key_id
from .responses import json_ok, rendered

PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_PAGE = 1_000_000
# The largest row id SQLite (and the Redis store's counter) can hold.
MAX_ROW_ID = 2**63 - 1
WINDOWS = {"hour": ("minute", 3600), "day": ("hour", 86400), "week": ("hour", 7 * 86400)}
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")


def whole_number(raw: Any, name: str, default: int, lo: int, hi: int) -> int:
    """A query or form value as a whole number in ``lo..hi`` (blank: ``default``),
    else a 400 naming it. ASCII digits only: ``str.isdigit`` passes "²", which
    ``int`` then refuses, and an unbounded number overflows the store's
    64-bit integers; both were 500s."""
    text = str(raw).strip() if raw is not None else ""
    if not text:
        return default
    if not _ASCII_DIGITS.fullmatch(text) or not lo <= int(text) <= hi:
        raise InvalidRequest(f"{name} must be a whole number from {lo} to {hi}", param=name)
    return int(text)


def row_id(raw: str) -> int | None:
    """A request-log row id from a path, or None (not found) for anything else."""
    if not _ASCII_DIGITS.fullmatch(raw) or int(raw) > MAX_ROW_ID:
        return None
    return int(raw)


def page_args(query: Any) -> tuple[int, int]:
    return (whole_number(query.get("page"), "page", 1, 1, MAX_PAGE),
            whole_number(query.get("per_page"), "per_page", PER_PAGE, 1, MAX_PER_PAGE))


def filters_of(query: Any) -> dict[str, Any]:
    found: dict[str, Any] = {name: query.get(name, "").strip() for name in FILTERS}
    if found["status"]:
        found["status"] = whole_number(found["status"], "status", 0, 100, 599)
    found["errors"] = query.get("errors") in ("1", "true", "on")
    return found


def by_key(filters: dict[str, Any], keys: Iterable[KeyConfig]) -> dict[str, Any]:
    """``key_name`` naming a configured key means that key under any name it
    had (its rows by ref: a rename does not hide its earlier requests); a
    name no key has now (a deleted key, pass-through) the rows recorded so."""
    key = next((k for k in keys if k.name == filters.get("key_name")), None)
    if key is None or filters.get("key_ref"):
        return filters
    return {**filters, "key_name": "", "key_ref": key.ref}


class UsageAPI:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    @property
    def store(self) -> UsageStore:
        store = self.ctx.core.usage.store
        if store is None:
            raise NotFound("usage recording is off (usage.enabled)")
        return store

    # -- keys --------------------------------------------------------------------------------

    def keys_view(self) -> list[dict[str, Any]]:
        core = self.ctx.core
        return [key_view(k, core.limiter) for k in core.config.keys]

    async def refresh(self) -> None:
        """The cluster's token totals of every key (shared state) before a read."""
        core = self.ctx.core
        await core.limiter.refresh_tokens(k.ref for k in core.config.keys)

    async def list_keys(self, request: web.Request) -> web.Response:
        await self.refresh()
        return json_ok({"keys": self.keys_view()})

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a named key; the reply is the only time its secret is shown."""
        if "name" not in body:  # the older {"key": …} form, named for the key on write
            total = await self.ctx.ops.add_key(body.get("key"))
            return {"success": True, "total_keys": total}
        given = body.get("key")
        # A chosen secret passes the same check as any other key (no spaces or
        # control characters, no pasted preview); none given: a new one.
        secret = new_secret() if given is None or given == "" else clean_key(given)
        await self.ctx.ops.write(lambda data: create_key(data, body, secret))
        view = next((k for k in self.keys_view() if k["id"] == key_id(secret)), None)
        if view is None:  # a delete that was waiting for the writer came next
            raise NotFound("that key was removed right after it was created")
        return {"success": True, "key": secret, "total_keys": len(self.ctx.core.config.key_secrets),
                **{k: v for k, v in view.items() if k != "key"}}

    async def add_key(self, request: web.Request) -> web.Response:
        return json_ok(await self.create(await self.ctx.body(request)))

    async def edit(self, request: web.Request) -> web.Response:
        body = await self.ctx.body(request)
        wanted = request.match_info["key"]
        await self.ctx.ops.write(lambda data: edit_key(data, wanted, body))
        view = next((k for k in self.keys_view() if k["id"] == wanted
                     or k["id"] == key_id(wanted)), None)
        return json_ok({"success": True, "key": view})

    # -- usage ---------------------------------------------------------------------------------

    async def requests(self, request: web.Request) -> web.Response:
        page, per_page = page_args(request.query)
        filters = by_key(filters_of(request.query), self.ctx.core.config.keys)
        rows, total = await self.store.requests(filters, per_page, (page - 1) * per_page)
        return json_ok({"requests": rows, "total": total, "page": page, "per_page": per_page})

    async def request_detail(self, request: web.Request) -> web.Response:
        wanted = row_id(request.match_info["id"])
        row = await self.store.request(wanted) if wanted is not None else None
        if row is None:
            raise NotFound("no such request in the log")
        return json_ok({"request": row})

    async def summary(self, request: web.Request) -> web.Response:
        window = request.query.get("window", "hour")
        if window not in WINDOWS:
            raise InvalidRequest(f"window must be one of {', '.join(WINDOWS)}", param="window")
        grain, span = WINDOWS[window]
        since = time.time() - span
        of_key = by_key({"key_name": request.query.get("key_name") or None},
                        self.ctx.core.config.keys)
        key, ref = of_key["key_name"] or None, of_key.get("key_ref")
        series = await self.store.series(grain, since, key, ref)
        totals = {group: await self.store.totals(group, grain, since, key, ref)
                  for group in GROUPS}
        return json_ok({"window": window, "grain": grain, "since": since, "series": series,
                        "totals": totals})

    # -- /metrics ---------------------------------------------------------------------------------

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        settings = self.ctx.core.config.metrics
        if not settings.enabled:
            raise web.HTTPNotFound()
        token = bearer_of(request)
        if not (settings.token and token
                and hmac.compare_digest(token.encode(), settings.token.encode())):
            await self.ctx.gate.require(request)
        return web.Response(body=self.ctx.core.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def add_usage_routes(app: web.Application, ctx: AdminContext, guarded: Any) -> UsageAPI:
    api = UsageAPI(ctx)
    router = app.router
    router.add_get("/admin/keys", guarded(ctx, api.list_keys))
    router.add_route("PATCH", "/admin/keys/{key}", guarded(ctx, api.edit))
    router.add_get("/admin/usage", guarded(ctx, api.summary))
    router.add_get("/admin/usage/requests", guarded(ctx, api.requests))
    router.add_get("/admin/usage/requests/{id}", guarded(ctx, api.request_detail))
    router.add_get("/metrics", rendered(api.metrics))
    return api

