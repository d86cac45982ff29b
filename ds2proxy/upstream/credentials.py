"""Upstream credentials for one turn: managed account tokens and pass-through.

:class:`TokenKeeper` owns the managed accounts' tokens: log in when there is
none, re-login when it is older than ``token_refresh_interval_hours`` or was
refused, and persist a fresh token to the config atomically (every other
field kept). :class:`Credentials` is what one turn holds: a token plus, for a
managed account, its lease. :func:`with_refresh` is the spec §3 rule "refresh
once and retry" around any endpoint call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..config import AccountConfig
from ..config_store import ConfigStore
from ..errors import (
    ACCOUNT_UNUSABLE,
    AuthenticationFailed,
    LoginFailed,
    UpstreamAuthError,
    UpstreamError,
)
from ..health import HealthTracker
from ..scheduler import AccountState, Lease
from ..state.errors import StateUnavailable
from ..state.tokens import SharedTokens
from .client import DeepSeekClient
from .envelope import UpstreamCallError

log = logging.getLogger("ds2proxy.upstream")

T = TypeVar("T")
LOGIN_RECHECK_SECONDS = 0.5  # waiting on another instance's login: look again this often

# Pass-through: most often a mistyped key, so say that first.
NOT_A_KEY_NOR_TOKEN = ("invalid API key: it is not one of this server's configured keys, "
                       "and DeepSeek did not accept it as a user token either")


class TokenKeeper:
    """Logs in at most once at a time per account (its lock), and not at all
    while that account's login is backing off after a failure."""

    def __init__(self, client: DeepSeekClient, store: ConfigStore,
                 health: HealthTracker | None = None, shared: SharedTokens | None = None
                 ) -> None:
        self.client = client
        self.store = store
        self.health = health or HealthTracker()
        self.shared = shared  # tokens kept in Redis for every instance

    def _stale(self, state: AccountState) -> bool:
        hours = self.store.config.upstream.token_refresh_interval_hours
        if not hours or not state.config.can_login:
            return False
        if state.token_obtained_at == 0.0:
            # The clock starts the first time the account is seen (spec §3).
            state.token_obtained_at = time.monotonic()
            return False
        return time.monotonic() - state.token_obtained_at > hours * 3600

    async def ensure(self, state: AccountState) -> str:
        """A usable token for the account, logging in when needed."""
        if state.token and not self._stale(state):
            return state.token
        if state.token:
            return await self._renew(state)
        return await self.refresh(state, stale_token="")

    async def _renew(self, state: AccountState) -> str:
        """The proactive re-login of an old token (spec §3). A courtesy: if it
        fails, the token (refused by nobody yet) goes on serving and the next
        try waits a login backoff; only a refused token fails the account."""
        token = state.token
        async with state.login_lock:
            if state.token != token or not self._stale(state):
                return state.token  # renewed, or given up on, meanwhile
            try:
                if self.shared is not None:
                    return await self._refresh_shared(state, token, report=False)
                return await self._login(state, report=False)
            except UpstreamError as exc:
                wait = self.health.settings.cooldown.login.base_seconds
                hours = self.store.config.upstream.token_refresh_interval_hours
                state.token_obtained_at = time.monotonic() - hours * 3600 + wait
                log.warning("account %s: proactive re-login failed (%s); its token serves on, "
                            "next try in %.0f s", state.identifier, exc.detail or exc.message,
                            wait)
                return token

    async def refresh(self, state: AccountState, *, stale_token: str) -> str:
        """Log in again unless another request already did since ``stale_token``."""
        async with state.login_lock:
            if state.token and state.token != stale_token:
                return state.token
            if self.shared is not None:
                return await self._refresh_shared(state, stale_token)
            return await self._login(state)

    async def _login(self, state: AccountState, *, report: bool = True) -> str:
        """Log in; a failure backs the account off (unless not ``report``)."""
        # The backoff first: turns that found the token refused together
        # wait here one after another, and only the first counts a failure.
        if not self.health.login_allowed(state.identifier):
            raise LoginFailed(ACCOUNT_UNUSABLE, account=state.identifier,
                              detail=f"login backing off after: {state.last_error}")
        if not state.config.can_login:
            raise self._login_failed(state, "token refused and no password to log in with")
        try:
            token = await self.client.login(state.config)
        except UpstreamError as exc:
            if not exc.retryable or not report:
                raise  # the server's own configuration (client too old): no account's fault
            # A refusal, and transport or server trouble too, backs off.
            raise self._login_failed(state, exc.detail or exc.message,
                                     exc.retry_after or 0) from None
        state.token, state.token_obtained_at, state.last_error = token, time.monotonic(), ""
        self.health.login_succeeded(state.identifier)
        log.info("logged in account %s", state.identifier)
        await self._persist(state.identifier, token)
        return token

    async def _refresh_shared(self, state: AccountState, stale_token: str, *,
                              report: bool = True) -> str:
        """A token newer than ``stale_token`` from any instance, logging in
        here only while holding the account's cluster-wide login lock."""
        shared = self.shared
        assert shared is not None
        ident = state.identifier
        lock_ttl = self.store.config.upstream.timeout_seconds + 5
        deadline = time.monotonic() + 2 * lock_ttl
        while True:
            fresh = shared.armed(ident)  # before the look: an announcement after it counts
            if (token := await self._adopt(state, stale_token)) is not None:
                return token
            if await shared.lock(ident, lock_ttl):
                try:
                    if (token := await self._adopt(state, stale_token)) is not None:
                        return token
                    token = await self._login(state, report=report)
                    await shared.put(ident, token)
                    return token
                finally:
                    with contextlib.suppress(StateUnavailable):  # it expires by itself
                        await shared.unlock(ident)
            if time.monotonic() >= deadline:
                raise LoginFailed(ACCOUNT_UNUSABLE, account=ident,
                                  detail="timed out waiting for another instance's login")
            await shared.wait(ident, min(LOGIN_RECHECK_SECONDS, deadline - time.monotonic()),
                              fresh)

    async def _adopt(self, state: AccountState, stale_token: str) -> str | None:
        """The shared token when it is newer than ``stale_token`` (kept on ``state``)."""
        assert self.shared is not None
        found = await self.shared.get(state.identifier)
        if found is None or found[0] == stale_token:
            return None
        token, age = found
        state.token, state.last_error = token, ""
        state.token_obtained_at = time.monotonic() - age
        return token

    def _login_failed(self, state: AccountState, reason: str, retry_after: int = 0
                      ) -> LoginFailed:
        """Back the account's login off (at least ``retry_after`` seconds, what
        a rate-limited login was told to wait)."""
        state.last_error = reason
        self.health.login_failed(state.identifier, reason, retry_after)
        return LoginFailed(ACCOUNT_UNUSABLE, account=state.identifier, detail=reason,
                           retry_after=retry_after or None)

    async def _persist(self, identifier: str, token: str) -> None:
        """Keep a new token in the config. A file that cannot take it (a
        read-only mount, a full disk) fails no login: the token serves from
        memory, and a later start logs in again."""
        def put(data: dict) -> None:
            for item in data.get("accounts") or []:
                if isinstance(item, dict) and _identifier_of(item) == identifier:
                    item["token"] = token

        try:
            await self.store.update(put)
        except OSError as exc:
            log.warning("the token of account %s is not saved (%s); it serves from memory",
                        identifier, exc.strerror or type(exc).__name__)


def _identifier_of(item: dict) -> str:
    return AccountConfig(
        email=(item.get("email") or "").strip(), mobile=(item.get("mobile") or "").strip(),
        token=(item.get("token") or "").strip(),
    ).identifier


@dataclass
class Credentials:
    """The token a turn uses, and the lease that backs it (managed mode)."""

    token: str
    lease: Lease | None = None
    refreshed: bool = field(default=False)
    # Calls made at once (session and PoW challenge) refresh the token once.
    refresh_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    @property
    def managed(self) -> bool:
        return self.lease is not None

    @property
    def identifier(self) -> str:
        return self.lease.account.identifier if self.lease else "passthrough"

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()


async def with_refresh(creds: Credentials, keeper: TokenKeeper,
                       call: Callable[[str], Awaitable[T]]) -> T:
    """Run ``call(token)``; on a refused token refresh once (managed) and retry.

    A pass-through token is never refreshed: its refusal is the caller's 401.
    Concurrent calls on one ``creds`` share a single refresh.
    """
    token = creds.token
    try:
        return await call(token)
    except UpstreamCallError as exc:
        if not exc.envelope.needs_refresh:
            raise
        if creds.lease is None:
            raise AuthenticationFailed(NOT_A_KEY_NOR_TOKEN) from None
        async with creds.refresh_lock:
            if creds.token == token:  # nobody refreshed it since this call was made
                if creds.refreshed:
                    raise UpstreamAuthError(
                        ACCOUNT_UNUSABLE, account=creds.identifier,
                        detail="token refused again right after a fresh login") from None
                creds.refreshed = True
                creds.token = await keeper.refresh(creds.lease.account, stale_token=token)
        return await call(creds.token)
