"""Who may call from a web page: the API routes are open to every origin
(browser SDKs, web chat front ends), the admin surface to none.

The API routes answer preflights and carry ``Access-Control-Allow-Origin: *``.
Everything under ``/admin`` carries no CORS header at all, and
:func:`admin_cross_site_guard` refuses a browser request to it that another
site started (``Sec-Fetch-Site``, else ``Origin``), so a page elsewhere cannot
log in with a guessed key or read the admin API, not even with a token it
stole. The dashboard's own pages and clients that send neither header
(curl, scripts) are unaffected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from .errors import PermissionDenied
from .error_bodies import admin_error

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Content-Type, Authorization, X-API-Key, X-Ds2-Target-Account, anthropic-version, "
        "anthropic-beta, x-goog-api-key, x-stainless-arch, x-stainless-lang, "
        "x-stainless-os, x-stainless-package-version, x-stainless-runtime, "
        "x-stainless-runtime-version, x-stainless-retry-count, x-stainless-timeout, "
        "x-goog-api-client, openai-organization, openai-project"),
    "Access-Control-Max-Age": "86400",
    # Browser clients may read how long to back off after a 429.
    "Access-Control-Expose-Headers": (
        "Retry-After, X-Request-Id, Request-Id, X-DS2Proxy-Served-By"),
}

# Sec-Fetch-Site values of a request the page itself (or the user) started.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})
# A link anywhere may open a dashboard page; nothing else from another site may.
_NAVIGATION_METHODS = frozenset({"GET", "HEAD"})


def is_admin_path(path: str) -> bool:
    """The admin surface, ``/metrics`` included (it is read with admin rights)."""
    return path in ("/admin", "/metrics") or path.startswith("/admin/")


def _is_dashboard_page(path: str) -> bool:
    return path in ("/admin", "/admin/") or path.startswith(("/admin/ui/", "/admin/static/"))


def _is_navigation(request: web.Request) -> bool:
    """The user following a link to a dashboard page (its forms excluded)."""
    return (_is_dashboard_page(request.path) and request.method in _NAVIGATION_METHODS
            and request.headers.get("Sec-Fetch-Mode", "navigate").lower() == "navigate")


def _own_origin(request: web.Request, origin: str) -> bool:
    """Does ``Origin`` name this server? Compared by host and port, since a
    TLS-terminating reverse proxy hands us plain HTTP for an https origin."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    hosts = {request.host.lower()}
    forwarded = request.headers.get("X-Forwarded-Host", "")
    hosts.update(h.strip().lower() for h in forwarded.split(",") if h.strip())
    netloc = parts.netloc.lower()
    default_port = {"http": ":80", "https": ":443"}[parts.scheme]
    return netloc in hosts or (netloc + default_port) in hosts or (
        netloc.endswith(default_port) and netloc[: -len(default_port)] in hosts)


def cross_site_reason(request: web.Request) -> str | None:
    """Why a browser request to the admin surface came from another site, or None."""
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if fetch_site and fetch_site not in _OWN_FETCH_SITES:
        return f"Sec-Fetch-Site: {fetch_site}"
    origin = request.headers.get("Origin")
    if origin is not None and fetch_site != "same-origin" and not _own_origin(request, origin):
        return "Origin is not this server"
    return None


@web.middleware
async def admin_cross_site_guard(request: web.Request, handler):
    """403 for an admin request another site's page made (preflights included)."""
    if not is_admin_path(request.path):
        return await handler(request)
    reason = cross_site_reason(request)
    if reason is None or _is_navigation(request):
        return await handler(request)
    return admin_error(PermissionDenied(
        f"cross-site requests to the admin API are refused ({reason}); use the dashboard "
        "on this server or a client that is not a web page", code="cross_site_refused"))


@web.middleware
async def cors_preflight(request: web.Request, handler):
    """Answer API preflights; the headers a browser asks for are allowed as
    asked, since SDKs keep adding their own (x-stainless-*, anthropic-*)."""
    if (request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
            and not is_admin_path(request.path)):
        asked = request.headers.get("Access-Control-Request-Headers", "").strip()
        headers = {"Access-Control-Allow-Headers": asked} if asked else {}
        return web.Response(status=204, headers=headers)
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: CORS headers on every answer but the admin's."""
    if is_admin_path(request.path):
        return
    for name, value in CORS_HEADERS.items():
        response.headers.setdefault(name, value)
