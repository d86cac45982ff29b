"""Config, settings, import/export, API keys and batch import."""

from __future__ import annotations

from aiohttp import web

from . import settings
from .context import AdminContext
from .responses import json_ok

IF_MATCH = "If-Match"


class ConfigAPI:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        self.ops = ctx.ops

    def _tagged(self, response: web.Response) -> web.Response:
        """The config's ETag, to send back as If-Match with the next write."""
        response.headers["ETag"] = self.ops.config_etag()
        return response

    async def get_config(self, request: web.Request) -> web.Response:
        view, etag = await self.ops.config_view_async()
        response = json_ok(view)
        response.headers["ETag"] = etag
        return response

    async def post_config(self, request: web.Request) -> web.Response:
        await self.ops.replace_lists(await self.ctx.body(request), request.headers.get(IF_MATCH))
        view, etag = await self.ops.config_view_async()
        response = json_ok({"success": True, "config": view})
        response.headers["ETag"] = etag
        return response

    async def get_settings(self, request: web.Request) -> web.Response:
        return json_ok(self.ops.settings_view())

    async def put_settings(self, request: web.Request) -> web.Response:
        changes = settings.flatten_patch(await self.ctx.body(request))
        await self.ops.update_settings(changes)
        return json_ok({"success": True, "settings": self.ops.settings_view()})

    async def import_config(self, request: web.Request) -> web.Response:
        body = await self.ctx.body(request)
        return self._tagged(json_ok(await self.ops.import_config(
            body, request.query.get("mode"), request.headers.get(IF_MATCH))))

    async def export_full(self, request: web.Request) -> web.Response:
        return self._tagged(json_ok(self.ops.export()))

    async def export_text(self, request: web.Request) -> web.Response:
        exported = self.ops.export()
        return json_ok({"json": exported["json"], "base64": exported["base64"]})

    async def delete_key(self, request: web.Request) -> web.Response:
        total = await self.ops.remove_key(request.match_info["key"])
        return json_ok({"success": True, "total_keys": total})

    async def batch_import(self, request: web.Request) -> web.Response:
        body = await self.ctx.body(request)
        return json_ok(await self.ops.batch_import(body.get("keys"), body.get("accounts")))
