"""Requests no route matches: a 404 or 405 in the shape of the API family
the path belongs to, so an SDK shows a readable error instead of failing
to parse aiohttp's plain-text page. The dashboard's pages keep aiohttp's
own answers.

Which family a path belongs to is the plugins' knowledge: each claims its
path prefixes (``api.claim_paths``), the loader hands the claims to the app
under :data:`PATH_CLAIMS`, and the longest claim that accepts the request
decides. The engine knows only its own paths (admin, pages) and a default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web

from .error_bodies import ErrorStyle, admin_error, openai_error
from .errors import ProxyError

# (prefix, error shape, predicate or None): a plugin's claim on a path prefix.
Claim = tuple[str, ErrorStyle, Callable[[web.Request], bool] | None]
PATH_CLAIMS = web.AppKey("path_claims", list)
_PAGES = ("/admin/ui", "/static/")
# Paths nobody claimed: the shape most clients parse.
DEFAULT_STYLE: ErrorStyle = openai_error


def claims_path(prefix: str, path: str) -> bool:
    """``/v1/messages`` claims itself and what lies below it, not ``/v1/messagesx``."""
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def style_for(request: web.Request, claims: Sequence[Claim]) -> ErrorStyle | None:
    """The error shape for an unmatched request; None for the dashboard's pages."""
    path = request.path
    if path.startswith(_PAGES):
        return None
    if path == "/admin" or path.startswith("/admin/"):
        return admin_error
    best: tuple[int, bool, ErrorStyle] | None = None
    for prefix, style, when in claims:
        if not claims_path(prefix, path) or (when is not None and not when(request)):
            continue
        rank = (len(prefix.rstrip("/")), when is not None, style)
        if best is None or rank[:2] > best[:2]:
            best = rank
    return best[2] if best is not None else DEFAULT_STYLE


@web.middleware
async def unmatched_routes(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Turn the router's own 404 / 405 into the family's error shape."""
    unmatched = request.match_info.http_exception
    style = style_for(request, request.app.get(PATH_CLAIMS, [])) \
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
