"""Masked views of secrets for admin reads.

Passwords are never returned; API keys and tokens appear only as a short
preview (``sk-a…3f``) plus a stable non-secret id that write routes accept
in place of the secret itself. Export endpoints are the only exception.

The ``kept_*`` / :func:`restore_tree` helpers undo the masking for writes:
a read sent back (edited or not) must keep the secrets it only showed as
previews, never store the previews in their place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from ..config import AccountConfig
from ..scheduler import AccountState
from ..secret_names import is_secret_name
from ..state.settings import masked_url
from ..upstream.proxies import mask_proxy

# What previews and masked URLs put in place of a secret.
MASK = "…"
# The admin's own credentials: never shown, never exported, never imported.
ADMIN_SECRETS = ("password_hash", "jwt_secret", "jwt_valid_after", "jwt_generation")


def preview(secret: str) -> str:
    """Enough of a secret to recognise it, never enough to use it."""
    if not secret:
        return ""
    if len(secret) >= 12:
        return f"{secret[:4]}…{secret[-2:]}"
    if len(secret) >= 8:
        return f"{secret[:2]}…"
    return "…"


def key_id(key: str) -> str:
    """A stable, non-secret handle for an API key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def masked_key(key: str) -> dict[str, str]:
    return {"id": key_id(key), "preview": preview(key)}


def masked_account(account: AccountConfig, state: AccountState | None = None,
                   health: dict[str, Any] | None = None) -> dict[str, Any]:
    """The account without its secrets; with its runtime state and health
    (state, reason, cooldown left, last success/failure, requests today)."""
    token = (state.token if state is not None else "") or account.token
    item: dict[str, Any] = {
        "identifier": account.identifier,
        "email": account.email,
        "mobile": account.mobile,
        "area_code": account.area_code,
        "has_password": bool(account.password),
        "has_token": bool(token),
        "token_preview": preview(token),
        "proxy": mask_proxy(account.proxy),
    }
    if state is not None:
        item.update(inflight=state.inflight, last_error=state.last_error)
    if health is not None:
        item.update(health)
    return item


def _has_credentials(value: str) -> bool:
    """A URL with a user or password (``scheme://user:pw@host``) or a
    credential in its query (``?password=…``, ``?token=…``)."""
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.isalnum() and masked_url(value) != value


def mask_tree(value: Any) -> Any:
    """A copy of a config subtree with every secret-named string previewed
    and the password of every URL that carries one masked."""
    if isinstance(value, dict):
        return {k: _masked_member(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_tree(v) for v in value]
    if isinstance(value, str) and _has_credentials(value):
        return masked_url(value)
    return value


def _masked_member(name: str, value: Any) -> Any:
    """A member's value for a read: under a secret's name, all of it masked."""
    return _all_masked(value) if is_secret_name(name) else mask_tree(value)


def _all_masked(value: Any) -> Any:
    """Everything a secret-named member holds is secret, at any depth, by
    whatever names its parts have (``"secrets": {"github": "ghp_…"}``,
    ``"credentials": {"user", "pass"}``, a list of ``{"value": …}``): each
    string and number previewed."""
    if isinstance(value, dict):
        return {k: _all_masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_all_masked(v) for v in value]
    if isinstance(value, str):
        return preview(value)
    if _is_number(value):
        return preview(str(value))
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _previews(given: Any, stored: Any, masked: Callable[[str], str]) -> bool:
    """``given`` is what a masked read showed of ``stored``, not a new value."""
    return (isinstance(given, str) and isinstance(stored, str) and bool(stored)
            and MASK in given and given == masked(stored))


def kept_proxy(given: str, stored: Any) -> str:
    """An account proxy: the stored one when ``given`` is its masked form."""
    return stored if _previews(given, stored, mask_proxy) else given


def _kept_leaf(name: str, given: Any, stored: Any) -> Any:
    return _kept_all(given, stored) if is_secret_name(name) else restore_tree(stored, given)


def _kept_all(given: Any, stored: Any) -> Any:
    """What :func:`_all_masked` showed of ``stored``, sent back: each preview
    is the stored value again; anything else is a new value."""
    if _previews(given, stored, preview) or (
            _is_number(stored) and isinstance(given, str) and MASK in given
            and given == preview(str(stored))):
        return stored
    if isinstance(given, list) and isinstance(stored, list):
        if all(isinstance(v, str) for v in given):
            return _kept_secrets(given, stored)
        if len(given) == len(stored):
            return [_kept_all(g, s) for g, s in zip(given, stored)]
    if isinstance(given, dict) and isinstance(stored, dict):
        return {k: _kept_all(v, stored[k]) if k in stored else v for k, v in given.items()}
    return given


def _kept_secrets(given: list[Any], stored: list[Any]) -> list[Any]:
    """A list of secrets sent back: each preview of a stored one is that
    secret again (the one at its place, else the only one it previews);
    new values stay as given."""
    by_preview: dict[str, list[str]] = {}
    for secret in stored:
        if isinstance(secret, str) and secret:
            by_preview.setdefault(preview(secret), []).append(secret)
    kept = []
    for i, item in enumerate(given):
        here = stored[i] if i < len(stored) else None
        if _previews(item, here, preview):
            kept.append(here)
        elif isinstance(item, str) and len(by_preview.get(item, [])) == 1 and MASK in item:
            kept.append(by_preview[item][0])
        else:
            kept.append(item)
    return kept


def restore_tree(stored: Any, given: Any) -> Any:
    """``given`` (a config subtree from a write) with every preview that
    :func:`mask_tree` made of ``stored`` replaced by the stored secret."""
    if isinstance(given, dict) and isinstance(stored, dict):
        return {k: _kept_leaf(k, v, stored[k]) if k in stored else v for k, v in given.items()}
    if isinstance(given, list) and isinstance(stored, list) and len(given) == len(stored):
        return [restore_tree(s, g) for s, g in zip(stored, given)]
    if _previews(given, stored, masked_url):
        return stored
    return given


def without_admin_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    """The document minus the admin's own credentials (``doc`` is not changed)."""
    admin = doc.get("admin")
    if not isinstance(admin, dict):
        return dict(doc)
    return {**doc, "admin": {k: v for k, v in admin.items() if k not in ADMIN_SECRETS}}
