"""Admin authentication for every request: a JWT or the admin key as
Bearer, or the dashboard's session cookie (with its CSRF token on writes).

Failed attempts with a key (not with a well-formed but expired JWT) count
toward the per-address login throttle, so the Bearer path cannot be used to
guess the key faster than the login form; a correct key is never refused.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from ..loopback import addressed_by_address
from .credentials import AdminCredentials, Claims, StaleToken
from .throttle import LoginThrottle, address_key
from .web_session import CSRF_HEADER, SAFE_METHODS, WebSessions


def bearer_of(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and len(token) > 40


class AdminGate:
    def __init__(self, creds: AdminCredentials, throttle: LoginThrottle,
                 sessions: WebSessions) -> None:
        self.creds = creds
        self.throttle = throttle
        self.sessions = sessions

    async def check_key(self, request: web.Request, key: str) -> None:
        """The admin key (or password): a right one passes at once, a wrong one
        gets its 401 late (see :mod:`.throttle`); 429 while too many are checked or held."""
        if self.creds.default_key_in_use and not addressed_by_address(request):
            raise PermissionDenied(
                "the default admin key is accepted only when this server is addressed as "
                "localhost or by IP address (a web page can point its own name at this "
                "machine); set DS2PROXY_ADMIN_KEY or a password", code="default_key_by_name")
        if not await self._throttled_check(request, key):
            raise AuthenticationFailed("invalid admin key")

    async def confirm_current(self, request: web.Request, current: Any) -> None:
        """An admin already in proves they know the password (or key) again
        before replacing it; wrong guesses are slowed like the login's."""
        if not isinstance(current, str):
            raise InvalidRequest("'current_password' must be a string", param="current_password")
        if not await self._throttled_check(request, current.strip()):
            raise PermissionDenied("current_password is not the admin password (or, before one "
                                   "is set, the admin key)", code="wrong_current_password",
                                   param="current_password")

    async def _throttled_check(self, request: web.Request, key: str) -> bool:
        address = address_key(request.remote)
        with self.throttle.checking(address):
            if key and await self.creds.check_key(key):
                return True
        await self.throttle.failed(address)
        return False

    def jwt_of(self, request: web.Request) -> Claims:
        token = bearer_of(request)
        if not token:
            raise AuthenticationFailed("send the admin JWT as Authorization: Bearer <token>")
        return self.creds.decode(token)

    async def require(self, request: web.Request) -> None:
        """Let an admin through or raise 401 / 403 / 429."""
        token = bearer_of(request)
        if token:
            await self._bearer(request, token)
            return
        claims = self.sessions.current(request)
        if claims is None:
            raise AuthenticationFailed("admin authentication required: send "
                                       "Authorization: Bearer <JWT or admin key>")
        if request.method not in SAFE_METHODS:
            self.sessions.check_csrf(claims, request.headers.get(CSRF_HEADER, ""))

    async def _bearer(self, request: web.Request, token: str) -> None:
        if _looks_like_jwt(token) and self._signed_by_us(token):
            return
        await self.check_key(request, token)

    def _signed_by_us(self, token: str) -> bool:
        """True for a valid admin JWT; StaleToken for an expired or revoked one."""
        try:
            self.creds.decode(token)
        except StaleToken:
            raise
        except AuthenticationFailed:
            return False
        return True
