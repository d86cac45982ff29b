"""Error bodies in each API family's own shape.

A plugin picks one of these when it declares its routes; the registry then
renders every :class:`ProxyError` its handlers raise through it. 429s always
carry ``Retry-After``; Google's shape adds a ``google.rpc.RetryInfo`` detail
because Gemini CLI ignores the header and honours that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from .errors import ProxyError

ErrorStyle = Callable[[ProxyError], web.Response]

_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 405: "UNIMPLEMENTED", 413: "INVALID_ARGUMENT", 422: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error", 500: "api_error", 501: "api_error", 502: "api_error",
    503: "overloaded_error", 504: "timeout_error",
}


def _headers(err: ProxyError) -> dict[str, str]:
    if err.status == 429 or err.retry_after:
        return {"Retry-After": str(err.retry_after or 1)}
    return {}


def _json(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body),
                        content_type="application/json", headers=headers)


def openai_error_body(err: ProxyError) -> dict:
    return {"error": {"message": err.message, "type": err.type, "code": err.code,
                      "param": err.param}}


def openai_error(err: ProxyError) -> web.Response:
    return _json(err.status, openai_error_body(err), _headers(err))


def anthropic_error_body(err: ProxyError) -> dict:
    kind = _ANTHROPIC_TYPES.get(err.status, err.type)
    return {"type": "error", "error": {"type": kind, "message": err.message, "code": err.code,
                                       "param": err.param}}


def anthropic_error(err: ProxyError) -> web.Response:
    return _json(err.status, anthropic_error_body(err), _headers(err))


def google_error_body(err: ProxyError) -> dict:
    error: dict[str, Any] = {"code": err.status, "message": err.message,
                             "status": _GOOGLE_STATUS.get(err.status, "UNKNOWN")}
    details: list[dict] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": err.code.upper(), "domain": "ds2proxy"}]
    if err.status == 429:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{err.retry_after or 1}s"})
    error["details"] = details
    return {"error": error}


def google_error(err: ProxyError) -> web.Response:
    return _json(err.status, google_error_body(err), _headers(err))


def ollama_error(err: ProxyError) -> web.Response:
    """Ollama's ``{"error": "..."}``; an unknown model is its 404."""
    status = 404 if err.code == "model_not_found" else err.status
    return _json(status, {"error": err.message}, _headers(err))


def admin_error(err: ProxyError) -> web.Response:
    """The one admin error shape, for every admin path (its routes, the
    cross-site guard, unmatched paths): ``{"detail": …}``, plus ``"field"``
    (the first at fault) and, when an error names several, ``"errors"``:
    {field: problem}; never cached."""
    body: dict[str, Any] = {"detail": err.message}
    if err.param:
        body["field"] = err.param
    fields = getattr(err, "errors", None)
    if isinstance(fields, dict):
        body["errors"] = fields
    return _json(err.status, body, {"Cache-Control": "no-store", **_headers(err)})
