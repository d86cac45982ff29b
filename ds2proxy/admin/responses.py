"""JSON answers and ``{"detail"}`` errors for the admin routes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ..errors import InvalidRequest, ProxyError

log = logging.getLogger("ds2proxy.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FieldErrors(InvalidRequest):
    """Several fields are wrong at once: every one is reported, not just the first."""

    def __init__(self, errors: dict[str, str]) -> None:
        listed = "; ".join(f"{field}: {problem}" for field, problem in errors.items())
        if len(errors) > 1:
            listed = f"{len(errors)} fields are invalid: {listed}"
        super().__init__(listed, param=next(iter(errors)))
        self.errors = dict(errors)


def json_ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def json_error(err: ProxyError) -> web.Response:
    """``{"detail": …}``, plus ``"field"`` (the first at fault) and, when
    several are, ``"errors"``: {field: problem} for each."""
    body: dict[str, Any] = {"detail": err.message}
    if err.param:
        body["field"] = err.param
    if isinstance(err, FieldErrors):
        body["errors"] = err.errors
    headers = {"Cache-Control": "no-store"}
    if err.status == 429 or err.retry_after:
        headers["Retry-After"] = str(err.retry_after or 1)
    return web.Response(status=err.status, body=orjson.dumps(body),
                        content_type="application/json", headers=headers)


def rendered(handler: Handler) -> Handler:
    """Turn ProxyErrors into admin error bodies; never leak a traceback."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProxyError as exc:
            return json_error(exc)
        except web.HTTPException:
            raise
        except Exception as exc:
            log.exception("admin route %s failed", request.path)
            return json_error(ProxyError(f"internal error: {type(exc).__name__}"))

    return wrapped
