"""The dashboard's shared machinery: Jinja rendering with the common page
context, the session check that sends strangers to the login page, and the
redirect-with-message every form ends with (post / redirect / get).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from importlib import metadata
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
import jinja2
import markupsafe
import orjson
from aiohttp import web
from multidict import MultiDictProxy

from ..body import ADMIN_BODY_BYTES, read_form
from ..errors import InvalidRequest, PayloadTooLarge, PermissionDenied, ProxyError
from ..loopback import is_local_client
from .assets import templates_dir
from .context import AdminContext
from .credentials import Claims
from .web_session import CSRF_FIELD

JINJA = web.AppKey("ds2proxy_admin_jinja", jinja2.Environment)
LOGIN_URL = "/admin/ui/login"
HOME_URL = "/admin/"

NAV = (
    ("overview", "Overview", HOME_URL),
    ("accounts", "Accounts", "/admin/ui/accounts"),
    ("providers", "Providers", "/admin/ui/providers"),
    ("keys", "API keys", "/admin/ui/keys"),
    ("usage", "Requests", "/admin/ui/usage"),
    ("playground", "Playground", "/admin/ui/playground"),
    ("settings", "Settings", "/admin/ui/settings"),
    ("config", "Import / export", "/admin/ui/config"),
    ("captures", "Captures", "/admin/ui/captures"),
    ("plugins", "Plugins", "/admin/ui/plugins"),
)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                "script-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

Form = MultiDictProxy[Any]
FormHandler = Callable[[web.Request, Claims, Form], Awaitable[web.StreamResponse]]


# -- Jinja filters ---------------------------------------------------------------------


def _ago(ts: float | None) -> str:
    if not ts:
        return "never"
    seconds = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _clock(ts: float | None) -> str:
    """A moment in UTC, named so: the charts' buckets are UTC, and the overview's
    live updates (static/admin.js) print the same text whatever zone the
    server or the browser is in."""
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s"


def _version() -> str:
    try:
        return metadata.version("ds2proxy")
    except metadata.PackageNotFoundError:
        return ""


def _breakable(value: Any) -> markupsafe.Markup:
    """An identifier that may wrap after its "@" and before each ".", never mid-word."""
    escaped = markupsafe.escape(str(value))
    return markupsafe.Markup(_BREAK_AT.sub("<wbr>", escaped))


_BREAK_AT = re.compile(r"(?<=@)|(?=\.)")


def pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def setup_templates(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(templates_dir())),
                               app_key=JINJA, autoescape=True, trim_blocks=True,
                               lstrip_blocks=True)
    env.filters.update(ago=_ago, breakable=_breakable, clock=_clock, duration=_duration,
                       pretty=pretty_json)


# A dashboard path (query and fragment allowed) in printable ASCII: no scheme,
# no host, no backslash, no whitespace or control character (CR/LF would
# break the Location header after the change was already applied).
_LOCAL_PATH = re.compile(r"/admin(?:[/?#][!-\[\]-~]*)?")
MAX_NEXT_CHARS = 2000


def safe_next(target: str | None, default: str = HOME_URL) -> str:
    """Only same-site dashboard paths: never an open redirect or a bad header."""
    if target and len(target) <= MAX_NEXT_CHARS and _LOCAL_PATH.fullmatch(target):
        return target
    return default


def _own_page(request: web.Request, referer: str) -> str:
    """The path and query of ``referer`` when it is a page of this server."""
    parts = urlsplit(referer)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != request.host.lower():
        return ""
    return parts.path + (f"?{parts.query}" if parts.query else "")


class Dashboard:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        self.sessions = ctx.sessions

    def session(self, request: web.Request, form_page: str = HOME_URL) -> Claims:
        """The logged-in admin, or a redirect to the login page that comes back
        to this page (its query included) or, for a form, to the page it was
        sent from (``form_page`` when that is unknown): a form's own address
        has no page to show."""
        claims = self.sessions.current(request)
        if claims is None:
            if request.method in ("GET", "HEAD"):
                back = request.rel_url.raw_path_qs
            else:
                back = safe_next(_own_page(request, request.headers.get("Referer", "")),
                                 form_page)
            raise web.HTTPSeeOther(f"{LOGIN_URL}?next={quote(back, safe='/')}")
        return claims

    def render(self, request: web.Request, template: str, *, claims: Claims | None = None,
               active: str = "", status: int = 200, **context: Any) -> web.Response:
        base = {
            "nav": NAV, "active": active, "version": _version(),
            "flash": self.sessions.read_flash(request),
            # Named to the logged-in admin and to a browser on this machine only.
            "default_key": self.ctx.creds.default_key_in_use and (
                claims is not None or is_local_client(request)),
            "config_source": self.ctx.core.store.source,
            "config_path": str(self.ctx.core.store.path or ""),
            "csrf": self.sessions.csrf_token(claims) if claims else "",
            "csrf_field": CSRF_FIELD,
        }
        response = aiohttp_jinja2.render_template(template, request, {**base, **context},
                                                  status=status, app_key=JINJA)
        self.sessions.clear_flash(request, response)
        response.headers.update(SECURITY_HEADERS)
        return response

    def back(self, request: web.Request, location: str, kind: str, text: str) -> web.Response:
        """303 to ``location`` with a one-shot message."""
        response = web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})
        self.sessions.flash(request, response, kind, text)
        return response

    def refused(self, request: web.Request, err: ProxyError) -> web.Response:
        return self.render(request, "error.html", status=err.status, title="Request refused",
                           message=err.message)

    def action(self, default_back: str, handler: FormHandler) -> Callable[
            [web.Request], Awaitable[web.StreamResponse]]:
        """A form POST: session, CSRF token, then ``handler``; errors go back as messages."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            claims = self.session(request, default_back)
            try:
                form = await read_form(request, ADMIN_BODY_BYTES)
                self.sessions.check_csrf(claims, str(form.get(CSRF_FIELD, "")))
            except (InvalidRequest, PermissionDenied, PayloadTooLarge) as exc:
                return self.refused(request, exc)
            try:
                return await handler(request, claims, form)
            except ProxyError as exc:
                back = safe_next(str(form.get("back") or ""), default_back)
                return self.back(request, back, "error", exc.message)

        return wrapped
