"""``/admin/login``, ``/admin/verify`` and ``/admin/settings/password``."""

from __future__ import annotations

import time

from aiohttp import web

from .context import LOGIN_BODY_BYTES, AdminContext, text_field
from .credentials import check_new_password
from .responses import json_ok


class AccessAPI:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def login(self, request: web.Request) -> web.Response:
        body = await self.ctx.body(request, limit=LOGIN_BODY_BYTES)
        hours = self.ctx.creds.expire_hours(body.get("expire_hours"))
        await self.ctx.gate.check_key(request, text_field(body, "admin_key"))
        token, lifetime = self.ctx.creds.issue(hours)
        return json_ok({"success": True, "token": token, "expires_in": lifetime})

    async def verify(self, request: web.Request) -> web.Response:
        claims = self.ctx.gate.jwt_of(request)
        remaining = max(0, int(claims.expires_at - time.time()))
        return json_ok({"valid": True, "expires_at": claims.expires_at,
                        "remaining_seconds": remaining})

    async def change_password(self, request: web.Request) -> web.Response:
        """The spec's body is ``{"new_password"}``; a ``current_password``
        sent beside it must be right (the dashboard always sends one)."""
        body = await self.ctx.body(request)
        new_password = check_new_password(body.get("new_password"))
        if body.get("current_password") is not None:
            await self.ctx.gate.confirm_current(request, body["current_password"])
        await self.ctx.ops.change_password(new_password)
        token, lifetime = self.ctx.creds.issue(self.ctx.creds.expire_hours())
        return json_ok({"success": True, "token": token, "expires_in": lifetime,
                        "message": "password changed; every earlier admin token is revoked"})
