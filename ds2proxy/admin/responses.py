"""JSON answers and ``{"detail"}`` errors for the admin routes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ..errors import InvalidRequest, ProxyError
from ..error_bodies import admin_error

log = logging.getLogger("ds2proxy.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FieldErrors(InvalidRequest):
    """Several fields are wrong at once: every one is reported, not just the
    first (``admin_error`` lists them under ``"errors"``)."""

    def __init__(self, errors: dict[str, str]) -> None:
        listed = "; ".join(f"{field}: {problem}" for field, problem in errors.items())
        if len(errors) > 1:
            listed = f"{len(errors)} fields are invalid: {listed}"
        super().__init__(listed, param=next(iter(errors)))
        self.errors = dict(errors)


def json_ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def route_of(request: web.Request) -> str:
    """The route's template (``/admin/keys/{key}``), never the path itself:
    a path may carry a secret (the key ``DELETE /admin/keys/{key}`` names)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(unmatched)"


def rendered(handler: Handler) -> Handler:
    """Turn ProxyErrors into admin error bodies; never leak a traceback."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProxyError as exc:
            return admin_error(exc)
        except web.HTTPException:
            raise
        except Exception as exc:
            log.exception("admin route %s %s failed", request.method, route_of(request))
            return admin_error(ProxyError(f"internal error: {type(exc).__name__}"))

    return wrapped
