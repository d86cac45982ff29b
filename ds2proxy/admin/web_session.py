"""The dashboard's browser session: an HttpOnly, SameSite=Strict cookie
(Secure when the browser came over HTTPS) holding an admin JWT, a per-session CSRF token for every form, and one-shot
signed "flash" messages shown after a redirect.

Before login there is no session yet, so the login form is protected by a
double-submit token: a random cookie that the form must echo.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Any

import orjson
from aiohttp import web

from ..errors import AuthenticationFailed, PermissionDenied
from .credentials import AdminCredentials, Claims

SESSION_COOKIE = "ds2proxy_admin"
LOGIN_COOKIE = "ds2proxy_login"
FLASH_COOKIE = "ds2proxy_flash"
COOKIE_PATH = "/admin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
MAX_FLASH_CHARS = 400  # ≤ 1,600 UTF-8 bytes: the cookie stays well under 4 KB
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def over_tls(request: web.Request) -> bool:
    """Did the browser reach us over HTTPS, directly or through a TLS-terminating
    reverse proxy (``X-Forwarded-Proto``, ``X-Forwarded-Scheme``,
    ``X-Forwarded-Ssl: on``, ``Forwarded: proto=https``, its value quoted or
    not, as RFC 7239 allows)? Only ever used to add ``Secure``, so a client
    claiming it gains nothing."""
    if request.secure:
        return True
    headers = request.headers
    schemes = {_first(headers.get(name, "")) for name in ("X-Forwarded-Proto",
                                                          "X-Forwarded-Scheme")}
    if "https" in schemes or _first(headers.get("X-Forwarded-Ssl", "")) == "on":
        return True
    for pair in _first(headers.get("Forwarded", "")).split(";"):
        name, _, value = pair.partition("=")
        if name.strip() == "proto" and value.strip().strip('"') == "https":
            return True
    return False


def public_origin(request: web.Request) -> str:
    """The origin the browser used, as clients should be told to call: behind
    a TLS-terminating proxy that is https (and the host it was asked for,
    ``X-Forwarded-Host``), though this server was reached over plain HTTP."""
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    return f"{'https' if over_tls(request) else 'http'}://{host}"


def _first(value: str) -> str:
    """The first (the browser-facing proxy's) of a comma-separated header's values."""
    return value.split(",")[0].strip().lower()


def cookie_name(request: web.Request, base: str) -> str:
    """``base``, suffixed with the port when the browser named one: cookies
    do not tell ports apart, so two servers on one host (a test instance
    beside production) would otherwise replace each other's sessions."""
    try:
        port = request.url.explicit_port
    except ValueError:  # a Host header yarl cannot read
        return base
    return f"{base}_{port}" if port is not None else base


def _set_cookie(response: web.StreamResponse, request: web.Request, base: str, value: str,
                max_age: int | None = None) -> None:
    response.set_cookie(cookie_name(request, base), value, path=COOKIE_PATH, httponly=True,
                        samesite="Strict", secure=over_tls(request), max_age=max_age)


def _cookie(request: web.Request, base: str) -> str:
    return request.cookies.get(cookie_name(request, base), "")


def _drop_cookie(request: web.Request, response: web.StreamResponse, base: str) -> None:
    response.del_cookie(cookie_name(request, base), path=COOKIE_PATH)


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


class WebSessions:
    def __init__(self, creds: AdminCredentials) -> None:
        self.creds = creds

    # -- the session itself ---------------------------------------------------------

    def current(self, request: web.Request) -> Claims | None:
        token = _cookie(request, SESSION_COOKIE)
        if not token:
            return None
        try:
            return self.creds.decode(token)
        except AuthenticationFailed:
            return None

    def start(self, request: web.Request, response: web.StreamResponse) -> None:
        token, lifetime = self.creds.issue(self.creds.expire_hours())
        _set_cookie(response, request, SESSION_COOKIE, token, lifetime)
        _drop_cookie(request, response, LOGIN_COOKIE)

    def end(self, request: web.Request, response: web.StreamResponse,
            claims: Claims | None) -> None:
        if claims is not None:
            self.creds.log_out(claims)
        _drop_cookie(request, response, SESSION_COOKIE)

    # -- CSRF -------------------------------------------------------------------------

    def csrf_token(self, claims: Claims) -> str:
        return self.creds.csrf_token(claims)

    def check_csrf(self, claims: Claims, submitted: str) -> None:
        if not _same(submitted, self.creds.csrf_token(claims)):
            raise PermissionDenied("the form's security token is missing or stale; "
                                   "reload the page and try again", code="csrf_failed")

    @staticmethod
    def login_token(request: web.Request) -> str:
        """The login form's double-submit token: the browser's, or a fresh one."""
        token = _cookie(request, LOGIN_COOKIE)
        return token if len(token) >= 20 else secrets.token_urlsafe(24)

    @staticmethod
    def keep_login_token(request: web.Request, response: web.StreamResponse, token: str) -> None:
        _set_cookie(response, request, LOGIN_COOKIE, token)

    def check_login_token(self, request: web.Request, submitted: str) -> None:
        if not _same(submitted, _cookie(request, LOGIN_COOKIE)):
            raise PermissionDenied("the login form's security token is missing or stale; "
                                   "reload the page and try again", code="csrf_failed")

    # -- flash messages -----------------------------------------------------------------

    def flash(self, request: web.Request, response: web.StreamResponse, kind: str,
              text: str) -> None:
        """A one-shot message for the next page; long texts (a pasted
        identifier, an error quoting input) are cut so the cookie stays small."""
        if len(text) > MAX_FLASH_CHARS:
            text = text[:MAX_FLASH_CHARS - 1] + "…"
        payload = base64.urlsafe_b64encode(orjson.dumps({"kind": kind, "text": text})).decode()
        _set_cookie(response, request, FLASH_COOKIE,
                    f"{payload}.{self.creds.mac('flash', payload)}", 60)

    def read_flash(self, request: web.Request) -> dict[str, Any] | None:
        """The pending flash message, if its signature holds (clear it when shown)."""
        payload, _, mac = _cookie(request, FLASH_COOKIE).rpartition(".")
        if not payload or not _same(mac, self.creds.mac("flash", payload)):
            return None
        try:
            message = orjson.loads(base64.urlsafe_b64decode(payload))
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    @staticmethod
    def clear_flash(request: web.Request, response: web.StreamResponse) -> None:
        if cookie_name(request, FLASH_COOKIE) in request.cookies:
            _drop_cookie(request, response, FLASH_COOKIE)
