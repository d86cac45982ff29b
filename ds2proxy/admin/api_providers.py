"""Upstream providers: list, read, add, update, delete, and the test button."""

from __future__ import annotations

from aiohttp import web

from .context import AdminContext, text_field
from .responses import json_ok


class ProvidersAPI:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        self.providers = ctx.ops.providers

    async def listing(self, request: web.Request) -> web.Response:
        return json_ok(self.providers.listing())

    async def one(self, request: web.Request) -> web.Response:
        return json_ok(self.providers.get(request.match_info["name"]))

    async def add(self, request: web.Request) -> web.Response:
        view, total = await self.providers.add(await self.ctx.body(request))
        return json_ok({"success": True, "provider": view, "total_providers": total})

    async def update(self, request: web.Request) -> web.Response:
        """``PUT /admin/providers/{name}``: the fields given change, the rest stay;
        a masked ``api_key`` (as reads show it) keeps the stored key."""
        view = await self.providers.update(request.match_info["name"],
                                           await self.ctx.body(request))
        return json_ok({"success": True, "provider": view})

    async def delete(self, request: web.Request) -> web.Response:
        total = await self.providers.remove(request.match_info["name"])
        return json_ok({"success": True, "total_providers": total})

    async def test(self, request: web.Request) -> web.Response:
        """``POST /admin/providers/{name}/test`` ``{"model"?}``: list the models,
        or with a model ask it for one token."""
        body = await self.ctx.body(request, optional=True)
        return json_ok(await self.providers.test(request.match_info["name"],
                                                 model=text_field(body, "model")))
