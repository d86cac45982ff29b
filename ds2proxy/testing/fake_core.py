"""The fake upstream's state and the request checks its handlers share."""

from __future__ import annotations

import secrets
from collections import deque
from typing import Any

import orjson
from aiohttp import web

from .envelopes import SESSION_NOT_FOUND, biz_error, code_error, missing_field
from .fake_pow import PowIssuer
from .scripts import Misbehaviour, Script
from .state import CallRecord, FakeAccount, FakeFile, FakeSession

CALL = web.RequestKey("fake_call", CallRecord)
NO_MISBEHAVIOUR = Misbehaviour()


class Refusal(Exception):
    """Raised by a check to answer the request with ``response`` right away."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class FakeCore:
    """Accounts, tokens, sessions, files, scripts and the call log."""

    def __init__(self, accounts: list[FakeAccount], *, difficulty: int,
                 secret: bytes | None) -> None:
        self.accounts = {a.identity: a for a in accounts}
        self.pow = PowIssuer(difficulty, secret=secret)
        self.calls: list[CallRecord] = []
        self.sessions: dict[str, FakeSession] = {}
        self.files: dict[str, FakeFile] = {}
        self.queue: deque[Script] = deque()
        self.misbehaving: dict[str, Misbehaviour] = {}
        self._tokens: dict[str, str] = {}  # token -> account identity
        self._seq = 0
        # Completion streams open now, and the most ever open at once, per account:
        # what an in-flight limit across several proxies must keep bounded.
        self.streaming: dict[str, int] = {}
        self.max_streaming: dict[str, int] = {}

    # -- tokens ---------------------------------------------------------------

    def issue_token(self, identity: str) -> str:
        """A valid token for ``identity`` (what a login returns)."""
        token = secrets.token_urlsafe(32)
        self._tokens[token] = identity
        return token

    def revoke_tokens(self, identity: str | None = None) -> None:
        """Invalidate every issued token (of one account when ``identity`` is given)."""
        for token, owner in list(self._tokens.items()):
            if identity is None or owner == identity:
                del self._tokens[token]

    def owner_of(self, authorization: str | None) -> str | None:
        scheme, _, token = (authorization or "").partition(" ")
        return self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None

    # -- misbehaviour ----------------------------------------------------------

    def misbehave(self, identity: str, how: Misbehaviour) -> None:
        """Make one account misbehave (``identity``: e-mail or mobile digits)."""
        self.misbehaving[identity.strip().lower()] = how

    def behave(self, identity: str | None = None) -> None:
        """Stop misbehaving (one account, or all)."""
        if identity is None:
            self.misbehaving.clear()
        else:
            self.misbehaving.pop(identity.strip().lower(), None)

    def misbehaviour(self, identity: str | None) -> Misbehaviour:
        return self.misbehaving.get(identity or "", NO_MISBEHAVIOUR)

    # -- request checks -------------------------------------------------------

    @staticmethod
    def call_of(request: web.Request) -> CallRecord:
        return request[CALL]

    async def json_body(self, request: web.Request, *required: str) -> dict[str, Any]:
        """The JSON body (recorded on the call); 422 naming the first missing field."""
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            raise Refusal(missing_field("body")) from None
        if not isinstance(body, dict):
            raise Refusal(missing_field("body"))
        self.call_of(request).body = body
        for name in required:
            if name not in body:
                raise Refusal(missing_field(name))
        return body

    def require_pow(self, request: web.Request, target_path: str, *, consume: bool = True,
                    check_expiry: bool = True) -> None:
        error = self.pow.check(request.headers.get("x-ds-pow-response"), target_path,
                               consume=consume, check_expiry=check_expiry)
        if error is not None:
            raise Refusal(code_error(error))

    def owned_session(self, request: web.Request, session_id: Any) -> FakeSession:
        session = self.sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None or session.owner != self.call_of(request).account:
            raise Refusal(biz_error(SESSION_NOT_FOUND))
        return session

    def new_session(self, owner: str) -> FakeSession:
        self._seq += 1
        session = FakeSession(owner=owner, seq_id=self._seq)
        self.sessions[session.id] = session
        return session
