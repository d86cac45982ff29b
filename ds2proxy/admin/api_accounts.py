"""Accounts: list, add, delete, queue status, tests; and the self-test."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..errors import InvalidRequest
from . import edits, probes
from .context import AdminContext, text_field
from .responses import json_ok


class AccountsAPI:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        self.core = ctx.core
        self.ops = ctx.ops

    async def listing(self, request: web.Request) -> web.Response:
        q = request.query
        return json_ok(self.ops.accounts_page(q.get("page"), q.get("page_size"), q.get("q", "")))

    async def add(self, request: web.Request) -> web.Response:
        identifier, total = await self.ops.add_account(await self.ctx.body(request))
        return json_ok({"success": True, "identifier": identifier, "total_accounts": total})

    async def delete(self, request: web.Request) -> web.Response:
        total = await self.ops.remove_account(request.match_info["identifier"])
        return json_ok({"success": True, "total_accounts": total})

    async def health(self, request: web.Request) -> web.Response:
        """``POST /admin/accounts/{identifier}/{action}``: disable, enable, reset."""
        info = request.match_info
        return json_ok({"success": True,
                        "account": self.ops.set_health(info["identifier"], info["action"])})

    async def set_proxy(self, request: web.Request) -> web.Response:
        """``PUT /admin/accounts/{identifier}/proxy`` ``{"proxy": "socks5://…"}``."""
        body = await self.ctx.body(request)
        account = await self.ops.set_proxy(request.match_info["identifier"],
                                           body.get("proxy", ""))
        return json_ok({"success": True, "account": account})

    async def queue_status(self, request: web.Request) -> web.Response:
        return json_ok(self.core.pool.status())

    async def test_one(self, request: web.Request) -> web.Response:
        body = await self.ctx.body(request)
        identifier = text_field(body, "identifier")
        if not identifier:
            raise InvalidRequest("'identifier' is required", param="identifier")
        return json_ok(await self.ops.test_account(
            identifier, model=text_field(body, "model", probes.DEFAULT_MODEL),
            message=text_field(body, "message")))

    async def test_all(self, request: web.Request) -> web.StreamResponse:
        body = await self.ctx.body(request, optional=True)
        model = text_field(body, "model", probes.DEFAULT_MODEL)
        message = text_field(body, "message")
        self.core.resolve_model(model)
        if body.get("stream"):
            return await self._stream_tests(request, model, message)
        results = [r async for r in self.ops.test_all(model=model, message=message)]
        order = {s.identifier: i for i, s in enumerate(self.core.pool.accounts())}
        results.sort(key=lambda r: order.get(r["account"], len(order)))
        return json_ok(probes.summarise(results))

    async def _stream_tests(self, request: web.Request, model: str, message: str
                            ) -> web.StreamResponse:
        """NDJSON progress: start, one line per finished account, done."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)

        async def line(data: dict[str, Any]) -> None:
            await response.write(orjson.dumps(data) + b"\n")

        await line({"event": "start", "total": len(self.core.pool.accounts())})
        results = []
        async for result in self.ops.test_all(model=model, message=message):
            results.append(result)
            await line({"event": "result", "result": result})
        summary = probes.summarise(results)
        del summary["results"]
        await line({"event": "done", **summary})
        await response.write_eof()
        return response

    async def self_test(self, request: web.Request) -> web.Response:
        body = await self.ctx.body(request, optional=True)
        keys = self.core.config.key_secrets
        wanted = text_field(body, "api_key")
        if not wanted.isprintable() or any(c.isspace() for c in wanted):
            raise InvalidRequest("'api_key' must not contain spaces or control characters",
                                 param="api_key")
        key = (edits.find_key(keys, wanted) or wanted) if wanted else (keys[0] if keys else "")
        if not key:
            raise InvalidRequest("no API key is configured: add one first", param="api_key")
        timeout = self.core.config.upstream.timeout_seconds + 30
        return json_ok(await probes.call_own_api(
            probes.own_base_url(request), key, model=text_field(body, "model", "deepseek-chat"),
            message=text_field(body, "message", "Hello"), timeout=timeout))
