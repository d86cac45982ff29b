"""Live status: overview, plugins, dev captures."""

from __future__ import annotations

from aiohttp import web

from .context import AdminContext
from .responses import json_ok


class StatusAPI:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def overview(self, request: web.Request) -> web.Response:
        return json_ok(self.ctx.ops.overview())

    async def plugins(self, request: web.Request) -> web.Response:
        return json_ok({"plugins": self.ctx.ops.plugin_list()})

    async def plugin_settings(self, request: web.Request) -> web.Response:
        return json_ok(self.ctx.ops.plugin_settings(request.match_info["name"]))

    async def put_plugin_settings(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await self.ctx.ops.set_plugin_settings(name, await self.ctx.body(request))
        return json_ok({"success": True, **self.ctx.ops.plugin_settings(name)})

    async def captures(self, request: web.Request) -> web.Response:
        return json_ok(self.ctx.ops.captures_view())

    async def clear_captures(self, request: web.Request) -> web.Response:
        self.ctx.captures.clear()
        return json_ok({"success": True, "detail": "capture logs cleared"})
