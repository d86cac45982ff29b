"""Masked views of secrets for admin reads.

Passwords are never returned; API keys and tokens appear only as a short
preview (``sk-a…3f``) plus a stable non-secret id that write routes accept
in place of the secret itself. Export endpoints are the only exception.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..config import AccountConfig
from ..scheduler import AccountState
from ..state.settings import masked_url
from ..upstream.proxies import mask_proxy

# Config members whose values are secrets wherever they appear.
SECRET_NAMES = frozenset({"password", "token", "api_key", "apikey", "secret", "key",
                          "access_token", "refresh_token", "jwt_secret", "password_hash"})
# The admin's own credentials: never shown, never exported, never imported.
ADMIN_SECRETS = ("password_hash", "jwt_secret", "jwt_valid_after")


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


def mask_tree(value: Any) -> Any:
    """A copy of a config subtree with every secret-named string previewed."""
    if isinstance(value, dict):
        return {k: (preview(v) if k.lower() in SECRET_NAMES and isinstance(v, str)
                    else masked_url(v) if k == "redis_url" and isinstance(v, str)
                    else mask_tree(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_tree(v) for v in value]
    return value


def without_admin_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    """The document minus the admin's own credentials (``doc`` is not changed)."""
    admin = doc.get("admin")
    if not isinstance(admin, dict):
        return dict(doc)
    return {**doc, "admin": {k: v for k, v in admin.items() if k not in ADMIN_SECRETS}}
