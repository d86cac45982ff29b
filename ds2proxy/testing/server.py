"""A protocol-faithful fake of chat.deepseek.com (spec §14), served by aiohttp.

    fake = FakeDeepSeek([FakeAccount("pw", email="a@example.com")], difficulty=2000)
    base_url = await fake.start()          # http://127.0.0.1:<port>
    fake.enqueue(Scripted(thinking="…", answer="…"), HttpFault(502))
    … point the client at base_url …
    fake.calls_to("chat/continue")         # what the client sent
    await fake.close()

Login (e-mail or mobile + password) issues opaque tokens; every other
endpoint needs one (``code 40003`` otherwise, HTTP 200 like the real site).
Completions need a solved PoW challenge; each one takes the next enqueued
script (see :mod:`ds2proxy.testing.scripts`) or echoes the prompt.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from multidict import CIMultiDict

from .chat_routes import ChatRoutes
from .envelopes import (
    CLIENT_TOO_OLD,
    INVALID_TOKEN,
    WRONG_PASSWORD,
    biz_error,
    code_error,
    missing_field,
    ok,
)
from .fake_core import CALL, Refusal
from .file_routes import FileRoutes
from .scripts import Script
from .state import CallRecord, FakeAccount, normalize_mobile
from .local_server import LocalServer

LOGIN_PATH = "/api/v0/users/login"
DEFAULT_DIFFICULTY = 144000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeDeepSeek(ChatRoutes, FileRoutes, LocalServer):
    """The fake upstream: state, call log, and the aiohttp app serving it."""

    def __init__(self, accounts: Iterable[FakeAccount] = (), *,
                 difficulty: int = DEFAULT_DIFFICULTY, min_client_version: str | None = None,
                 default_script: Script | None = None, file_pending_polls: int = 0,
                 secret: bytes | None = None, latency: float = 0.0) -> None:
        super().__init__(list(accounts), difficulty=difficulty, secret=secret)
        self.min_client_version = min_client_version
        self.default_script = default_script
        self.file_pending_polls = file_pending_polls
        # Seconds each call waits before it is handled: a network round trip.
        self.latency = latency
        # How an unknown or revoked token is refused (see _refused_token).
        self.refused_token_status = 200
        self.base_url: str | None = None
        self._runner: web.AppRunner | None = None

    # -- test API ------------------------------------------------------------

    def enqueue(self, *scripts: Script) -> None:
        """Scripts for the next completion calls, first in first out."""
        self.queue.extend(scripts)

    def add_account(self, account: FakeAccount) -> None:
        self.accounts[account.identity] = account

    def calls_to(self, endpoint: str) -> list[CallRecord]:
        """Recorded calls of one endpoint, e.g. ``"chat/continue"``."""
        return [c for c in self.calls if c.endpoint == endpoint]

    # -- server --------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate], client_max_size=64 * 1024 * 1024)
        app.add_routes([web.post(LOGIN_PATH, self.login), *self.chat_routes(),
                        *self.file_routes()])
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Record the call; refuse old clients and (except login) unknown tokens."""
        if self.latency:
            await asyncio.sleep(self.latency)
        call = CallRecord(request.path, request.method, CIMultiDict(request.headers),
                          dict(request.query), peer=request.remote or "")
        self.calls.append(call)
        request[CALL] = call
        if self._too_old(request.headers.get("x-client-version")):
            return code_error(CLIENT_TOO_OLD)
        if request.path != LOGIN_PATH:
            call.account = self.owner_of(request.headers.get("authorization"))
            if call.account is None or self.misbehaviour(call.account).banned:
                return self._refused_token()
            if (fault := self.http_fault(call)) is not None:
                return fault
        try:
            return await handler(request)
        except Refusal as refusal:
            return refusal.response

    def _refused_token(self) -> web.Response:
        """HTTP 200 ``code 40003`` as the site answers [S]; or, with
        ``refused_token_status`` set, that status and a plain-text body (the
        401/403 a front proxy or a later site version may answer, spec §3)."""
        if self.refused_token_status == 200:
            return code_error(INVALID_TOKEN)
        return web.Response(status=self.refused_token_status, text="Unauthorized")

    def http_fault(self, call: CallRecord) -> web.Response | None:
        """The HTTP error the caller's account is told to get at this endpoint."""
        fault = self.misbehaviour(call.account).http.get(call.endpoint)
        if fault is None:
            return None
        return web.Response(status=fault.status, text=fault.body, headers=dict(fault.headers))

    def _too_old(self, version: str | None) -> bool:
        if not self.min_client_version:
            return False
        return _version(version or "") < _version(self.min_client_version)

    # -- login ---------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        body = await self.json_body(request, "password", "device_id")
        if "email" not in body and "mobile" not in body:
            return missing_field("email")
        email, mobile = str(body.get("email") or "").strip().lower(), body.get("mobile")
        identity = email or normalize_mobile(str(mobile or ""))
        self.call_of(request).account = identity or None
        account = self.accounts.get(identity)
        refusal = self.misbehaviour(identity).login_error
        if (fault := self.http_fault(self.call_of(request))) is not None:
            return fault
        if refusal is not None:
            return biz_error(refusal)
        if account is None or not hmac.compare_digest(account.password.encode(),
                                                      str(body["password"]).encode()):
            return biz_error(WRONG_PASSWORD)
        user = {"id": hashlib.sha1(identity.encode()).hexdigest()[:16],
                "token": self.issue_token(identity), "email": _mask(account.email),
                "mobile_number": _mask(account.mobile),
                "area_code": "+86" if account.mobile else None, "status": 0,
                "chat": {"is_muted": 0, "mute_until": None}}
        return ok({"code": 0, "msg": "", "user": user})


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)) or (0,)


def _mask(value: str) -> str | None:
    """``us****r@example.com`` / ``138******00``: what the real login shows back."""
    if not value:
        return None
    name, at, domain = value.partition("@")
    keep = 2 if at else 3
    return f"{name[:keep]}{'*' * max(1, len(name) - keep - 1)}{name[-1:]}{at}{domain}"
