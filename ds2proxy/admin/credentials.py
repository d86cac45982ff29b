"""Who may administer, and the JWTs that prove it.

Until a password is set, the admin key is the one the process was started
with (``DS2PROXY_ADMIN_KEY``, default ``admin``). Setting a password stores
only a salted hash in the config (``admin.password_hash``); from then on the
password replaces the start-up key, and bumps ``admin.jwt_generation``,
which revokes every JWT issued before (each carries the generation it was
issued in: no clock is compared, so instances whose clocks differ agree;
``admin.jwt_valid_after`` still revokes tokens issued without one). Each JWT
also names, by a keyed MAC, the key or password it was issued under: one
issued under a start-up key the process no longer has is refused. The
signing secret (``admin.jwt_secret``) is made once and kept in the config so
sessions survive a restart; it is never shown.
With shared state the config (and so the revocation time) is the cluster's,
and each logged-out session is a state record every instance learns of.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

from ..config_sections import MAX_SESSION_HOURS
from ..config_store import ConfigStore
from ..errors import AuthenticationFailed, InvalidRequest
from ..state import StateStore
from ..state.errors import StateUnavailable
from .passwords import hash_password, password_problem, verify_password

log = logging.getLogger("ds2proxy.admin")


@cache
def _jwt() -> ModuleType:
    """PyJWT, imported when a token is first issued or read: with the
    cryptography backend it loads, ~9 MB a server whose dashboard is never
    logged into does not hold."""
    import jwt

    return jwt

DEFAULT_ADMIN_KEY = "admin"
ALGORITHM = "HS256"
LOGOUTS = "admin_logouts"  # state namespace: jti -> {"exp": expiry}
MAX_EXPIRE_HOURS = MAX_SESSION_HOURS


class StaleToken(AuthenticationFailed):
    """A token we signed that is expired, revoked or logged out."""


@dataclass(frozen=True, slots=True)
class Claims:
    """A verified admin JWT."""

    jti: str
    issued_at: float
    expires_at: int


def check_new_password(value: Any) -> str:
    """``value`` as the new admin password, or a 400 naming the problem."""
    if not isinstance(value, str):
        raise InvalidRequest("the new password must be a string", param="new_password")
    problem = password_problem(value)
    if problem:
        raise InvalidRequest(problem, param="new_password")
    return value


class AdminCredentials:
    def __init__(self, store: ConfigStore, admin_key: str | None,
                 records: StateStore | None = None) -> None:
        self.store = store
        self.records = records
        if records is not None:
            records.watch(LOGOUTS, self._logged_out_elsewhere)
        # A blank key (``DS2PROXY_ADMIN_KEY=" "``) would be a guessable one that
        # slips past the default-key checks: it counts as unset.
        self.start_key = (admin_key or "").strip() or DEFAULT_ADMIN_KEY
        self._verified: tuple[str, bytes] | None = None
        self._logged_out: dict[str, int] = {}
        # The signing secret while the config cannot be saved (see ensure_secret).
        self._unsaved_secret = ""

    # -- state kept in the config ------------------------------------------------

    def _admin(self) -> dict[str, Any]:
        section = self.store.config.raw.get("admin")
        return section if isinstance(section, dict) else {}

    @property
    def password_set(self) -> bool:
        return bool(self._admin().get("password_hash"))

    @property
    def default_key_in_use(self) -> bool:
        return not self.password_set and self.start_key == DEFAULT_ADMIN_KEY

    def _valid_after(self) -> float:
        value = self._admin().get("jwt_valid_after")
        return float(value) if isinstance(value, (int, float)) else 0.0

    def _generation(self) -> int:
        value = self._admin().get("jwt_generation")
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def _secret(self) -> str:
        secret = self._admin().get("jwt_secret")
        if isinstance(secret, str) and secret:
            return secret
        if self._unsaved_secret:
            return self._unsaved_secret
        raise AuthenticationFailed("admin sessions are not ready yet; try again")

    async def ensure_secret(self) -> None:
        """Create the JWT signing secret the first time the server starts.

        A config file that cannot be written (a read-only mount, a full
        disk) does not stop the server: the secret then lives in memory and
        admin sessions end when the process does."""
        if isinstance(self._admin().get("jwt_secret"), str) and self._admin()["jwt_secret"]:
            return

        def put(data: dict) -> None:
            admin = data.setdefault("admin", {})
            if not admin.get("jwt_secret"):
                admin["jwt_secret"] = self._unsaved_secret or secrets.token_urlsafe(48)

        # Bookkeeping, not an admin change: it does not create a missing config file.
        try:
            await self.store.update(put, creates_file=False)
        except StateUnavailable:
            log.warning("admin sessions wait for the shared config: the state store is "
                        "unreachable")
        except OSError as exc:
            self._unsaved_secret = self._unsaved_secret or secrets.token_urlsafe(48)
            log.warning("the config cannot be saved (%s): admin sessions last until this "
                        "process ends", exc.strerror or type(exc).__name__)

    # -- the admin key or password ------------------------------------------------

    async def check_key(self, candidate: str) -> bool:
        """Does ``candidate`` open the admin? (The password once one is set.)"""
        stored = self._admin().get("password_hash")
        if not isinstance(stored, str) or not stored:
            return hmac.compare_digest(candidate.encode(), self.start_key.encode())
        fingerprint = hashlib.sha256(candidate.encode()).digest()
        if self._verified is not None and self._verified[0] == stored:
            if hmac.compare_digest(self._verified[1], fingerprint):
                return True
        if await verify_password(candidate, stored):
            # Remember the last good one so Bearer-key calls skip scrypt.
            self._verified = (stored, fingerprint)
            return True
        return False

    async def change_password(self, new_password: Any) -> None:
        """Store a hash of the new password and revoke every JWT issued so far."""
        digest = await hash_password(check_new_password(new_password))

        def put(data: dict) -> None:
            admin = data.setdefault("admin", {})
            admin["password_hash"] = digest
            # The generation revokes on every instance whatever its clock; the
            # time still revokes tokens issued without one (older versions).
            generation = admin.get("jwt_generation")
            admin["jwt_generation"] = (generation if isinstance(generation, int) else 0) + 1
            admin["jwt_valid_after"] = time.time()

        await self.store.update(put)
        self._verified = None
        log.info("admin password changed; earlier admin sessions are revoked")

    # -- JWTs ----------------------------------------------------------------------

    def expire_hours(self, requested: Any = None) -> float:
        if requested is None:
            return self.store.config.admin.jwt_expire_hours
        if isinstance(requested, bool) or not isinstance(requested, (int, float)):
            raise InvalidRequest("expire_hours must be a number", param="expire_hours")
        if not 0 < requested <= MAX_EXPIRE_HOURS:
            raise InvalidRequest(f"expire_hours must be above 0 and at most {MAX_EXPIRE_HOURS}",
                                 param="expire_hours")
        return float(requested)

    def issue(self, hours: float) -> tuple[str, int]:
        """A signed token and its lifetime in seconds."""
        now = time.time()
        lifetime = max(1, round(hours * 3600))
        claims = {"sub": "admin", "iat": now, "exp": int(now) + lifetime,
                  "jti": uuid.uuid4().hex, "gen": self._generation(),
                  "cred": self._credential_tag()}
        return _jwt().encode(claims, self._secret(), algorithm=ALGORITHM), lifetime

    def decode(self, token: str) -> Claims:
        """Verify a token; 401 when it is invalid, expired, revoked or logged out."""
        jwt = _jwt()
        try:
            # No "issued in the future" check: a token another instance issued
            # by a clock running ahead of this one's is as good as any.
            payload = jwt.decode(token, self._secret(), algorithms=[ALGORITHM],
                                 options={"require": ["exp", "iat", "jti"],
                                          "verify_iat": False})
        except jwt.ExpiredSignatureError:
            raise StaleToken("admin token expired; log in again") from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("invalid admin token") from None
        claims = Claims(str(payload["jti"]), float(payload["iat"]), int(payload["exp"]))
        if self._revoked(payload) or claims.jti in self._logged_out:
            raise StaleToken("admin token revoked; log in again")
        if not hmac.compare_digest(str(payload.get("cred", "")), self._credential_tag()):
            raise StaleToken("admin token revoked: the admin key has changed; log in again")
        return claims

    def _credential_tag(self) -> str:
        """Names (without revealing) the key or password that opens the admin
        now: a token carries the one it was issued under, so restarting with
        a new DS2PROXY_ADMIN_KEY (a leaked one rotated) ends the old sessions."""
        stored = self._admin().get("password_hash")
        opener = stored if isinstance(stored, str) and stored else "key:" + self.start_key
        return self.mac("credential", opener)[:16]

    def _revoked(self, payload: dict[str, Any]) -> bool:
        """Issued before the last password change: by its generation (no clock
        involved: instances' clocks may differ), else by its issue time."""
        generation = payload.get("gen")
        if isinstance(generation, int) and not isinstance(generation, bool):
            return generation < self._generation()
        return float(payload["iat"]) < self._valid_after()

    def log_out(self, claims: Claims) -> None:
        """Revoke one session's token (kept only until it would expire anyway)."""
        now = time.time()
        for jti in [j for j, exp in self._logged_out.items() if exp <= now]:
            del self._logged_out[jti]
            if self.records is not None:
                self.records.put(LOGOUTS, jti, None)
        self._logged_out[claims.jti] = claims.expires_at
        if self.records is not None:
            self.records.put(LOGOUTS, claims.jti, {"exp": claims.expires_at})

    def _logged_out_elsewhere(self, jti: str, value: dict | None) -> None:
        if value is not None:
            self._logged_out[jti] = int(value.get("exp", 0))

    async def load_logouts(self) -> None:
        """Sessions logged out before this start (or on another instance)."""
        if self.records is None:
            return
        try:
            saved = await self.records.load(LOGOUTS)
        except StateUnavailable:
            log.warning("logged-out admin sessions not loaded: the state store is unreachable")
            return
        now = time.time()
        for jti, value in saved.items():
            if int(value.get("exp", 0)) > now:
                self._logged_out[jti] = int(value["exp"])

    def mac(self, purpose: str, value: str) -> str:
        """A keyed MAC of ``value`` for one ``purpose`` (form tokens, signed cookies)."""
        data = f"{purpose}:{value}".encode()
        return hmac.new(self._secret().encode(), data, hashlib.sha256).hexdigest()[:40]

    def csrf_token(self, claims: Claims) -> str:
        """The per-session form token: bound to the session, useless without it."""
        return self.mac("csrf", claims.jti)
