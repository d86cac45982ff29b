"""Requests no route matches: a 404 or 405 in the shape of the API family
the path belongs to, so an SDK shows a readable error instead of failing
to parse aiohttp's plain-text page. The dashboard's pages keep aiohttp's
own answers."""

from __future__ import annotations

import re

from aiohttp import web

from .errors import ProxyError
from .error_bodies import (
    ErrorStyle,
    admin_error,
    anthropic_error,
    google_error,
    ollama_error,
    openai_error,
)

_GOOGLE_PATH = re.compile(r"^/(v1beta|v1alpha)/|^/v1/models/[^/]+:")
_ANTHROPIC_PATH = re.compile(r"^/anthropic/|^/(v1/)?messages(/|$)")
_OLLAMA_PATH = re.compile(r"^/api/(?!v1(/|$))")
_PAGES = ("/admin/ui", "/static/")


def style_for(path: str, *, google_client: bool = False) -> ErrorStyle | None:
    """The error shape of the family a path belongs to; None for pages.
    ``/v1/…`` is shared: a Google client there gets Google's shape."""
    if path.startswith(_PAGES):
        return None
    if path.startswith("/admin"):
        return admin_error
    if _GOOGLE_PATH.match(path) or (google_client and path.startswith("/v1/")):
        return google_error
    if _ANTHROPIC_PATH.match(path):
        return anthropic_error
    if _OLLAMA_PATH.match(path):
        return ollama_error
    return openai_error


@web.middleware
async def unmatched_routes(request: web.Request, handler):
    """Turn the router's own 404 / 405 into the family's error shape."""
    unmatched = request.match_info.http_exception
    style = style_for(request.path, google_client=_google_client(request)) \
        if unmatched is not None else None
    if style is None:
        return await handler(request)
    if isinstance(unmatched, web.HTTPMethodNotAllowed):
        allowed = sorted(unmatched.allowed_methods)
        error = ProxyError(f"{request.method} is not allowed on {request.path}; use "
                           f"{' or '.join(allowed)}", status=405, code="method_not_allowed",
                           type="invalid_request_error")
        response = style(error)
        response.headers["Allow"] = ",".join(allowed)
        return response
    return style(ProxyError(f"no route {request.method} {request.path}", status=404,
                            code="not_found", type="invalid_request_error"))


def _google_client(request: web.Request) -> bool:
    """Google's SDKs and CLI: their key header or query, or their client tag."""
    return ("x-goog-api-key" in request.headers or "x-goog-api-client" in request.headers
            or "key" in request.query)
