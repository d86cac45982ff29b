"""Caller authentication: which credential the caller sent and what it means.

A credential listed in the config's ``keys`` selects *managed* mode (an account is
leased from the pool); any other credential is a DeepSeek user token used
directly (*pass-through*), unless ``auth.allow_passthrough`` is off.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from aiohttp import web

from .config import Config, header_safe
from .cors import cross_site_reason
from .errors import AuthenticationFailed
from .keyring import KeyConfig, identity_of
from .limits import KeyLimiter

TARGET_ACCOUNT_HEADER = "X-Ds2-Target-Account"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling. ``identity`` is a stable, non-secret id (a hash)."""

    credential: str
    managed: bool
    identity: str
    target_account: str | None = None
    key_name: str = ""  # the named key's label; "" for pass-through

    def __repr__(self) -> str:  # never print the credential
        return f"Caller(managed={self.managed}, identity={self.identity})"


def credentials_sent(request: web.Request) -> list[str]:
    """Every credential the request carries, in the spec §13 order: Bearer,
    x-api-key, x-goog-api-key, ?key=, ?api_key=."""
    found: list[str] = []
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        found.append(auth[7:].strip())
    for header in ("x-api-key", "x-goog-api-key"):
        found.append(request.headers.get(header, "").strip())
    for param in ("key", "api_key"):
        found.append(request.query.get(param, "").strip())
    return [c for c in dict.fromkeys(found) if c]


def extract_credential(request: web.Request, keys: Collection[str] = ()) -> str:
    """The caller's credential: the first one that is a configured key, else
    the first one sent. A client may send two (Claude Code with a gateway key
    in ``x-api-key`` and its own token as Bearer): the key wins."""
    sent = credentials_sent(request)
    return next((c for c in sent if c in keys), sent[0] if sent else "")


def check_key(key: KeyConfig) -> None:
    """A disabled or expired key is refused by name (never by its secret)."""
    if key.disabled:
        raise AuthenticationFailed(f"API key '{key.name}' is disabled", code="key_disabled")
    if key.expired():
        raise AuthenticationFailed(f"API key '{key.name}' has expired", code="key_expired")


def authenticate(request: web.Request, config: Config, *, implied: str | None = None,
                 limiter: KeyLimiter | None = None) -> Caller:
    """``implied``: a configured key to assume when the request carries no
    credential at all (a plugin setting for clients that cannot send one);
    ``limiter`` admits a named key against its request limits."""
    credential = extract_credential(request, config.key_secrets)
    if not credential and implied and implied in config.key_secrets:
        _no_implied_key_for_other_sites(request)
        credential = implied
    if not credential:
        raise AuthenticationFailed("missing API key: send Authorization: Bearer <key>")
    key = config.key_named(credential)
    if key is None and not config.auth.allow_passthrough:
        raise AuthenticationFailed("invalid API key: it is not one of this server's "
                                   "configured keys")
    if key is None and not header_safe(credential):
        # Only ?key= can carry a line break (a header cannot): as a DeepSeek
        # token it would be refused by the HTTP client as header injection.
        raise AuthenticationFailed("invalid API key: it holds a blank or control character")
    if key is not None:
        check_key(key)
        if limiter is not None:
            limiter.admit(key, defer=request.method == "POST")  # see KeyLimiter.hold
    target = request.headers.get(TARGET_ACCOUNT_HEADER, "").strip() or None
    managed = key is not None
    return Caller(credential, managed, identity_of(credential), target if managed else None,
                  key.name if key else "")


def _no_implied_key_for_other_sites(request: web.Request) -> None:
    """A key assumed for credential-less requests is for local tools, not for
    any web page the user happens to open (the API routes answer every origin)."""
    reason = cross_site_reason(request)
    if reason is not None:
        raise AuthenticationFailed(f"a request from a web page on another site ({reason}) "
                                   "must send an API key; the implied key is not used for it")
