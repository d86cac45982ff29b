"""Named API keys for the admin: create (secret generated, shown once), edit,
and the masked view with each key's limits and how close it is to them."""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..errors import InvalidRequest, NotFound
from ..keyring import KEY_FIELDS, LIMIT_FIELDS, KeyConfig, KeyEntryError, parse_key, secret_of
from ..limits import KeyLimiter
from .edits import Conflict, _keys, find_entry
from .masking import key_id, preview

EDITABLE = ("name", "note", "expires", "models", "limits", "disabled")


def new_secret() -> str:
    return "sk-" + secrets.token_urlsafe(24)


def _checked(entry: dict[str, Any], others: list[Any]) -> dict[str, Any]:
    """``entry`` validated against the other keys (names unique); 400 naming the field."""
    taken = set()
    for other in others:
        if isinstance(other, dict) and isinstance(other.get("name"), str):
            taken.add(other["name"].strip())
    try:
        parse_key(entry, "key", taken)
    except KeyEntryError as exc:
        raise InvalidRequest(f"{exc.where.removeprefix('key.')}: {exc}",
                             param=exc.where.removeprefix("key.")) from None
    return entry


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - set(EDITABLE) - {"key"})
    if unknown:
        raise InvalidRequest(f"unknown key field {unknown[0]!r}", param=unknown[0])
    fields = {k: body[k] for k in EDITABLE if k in body and body[k] is not None}
    if isinstance(fields.get("limits"), dict):
        fields["limits"] = {k: v for k, v in fields["limits"].items() if v not in (None, "")}
        extra = sorted(set(fields["limits"]) - set(LIMIT_FIELDS))
        if extra:
            raise InvalidRequest(f"unknown limit {extra[0]!r}", param=f"limits.{extra[0]}")
    return fields


def create_key(data: dict[str, Any], body: dict[str, Any], secret: str) -> None:
    """Append a named key with ``secret`` (returns nothing: a returned dict
    would replace the whole document in ``ConfigStore.update``)."""
    keys = _keys(data)
    if secret in {secret_of(k) for k in keys}:
        raise Conflict("that API key is already configured")
    entry = {"key": secret, **_fields(body), "created": round(time.time())}
    if not str(entry.get("name") or "").strip():
        raise InvalidRequest("'name' is required: a label for who uses the key", param="name")
    keys.append(_checked(entry, keys))


def edit_key(data: dict[str, Any], key_or_id: str, body: dict[str, Any]) -> None:
    keys = _keys(data)
    found = find_entry(keys, key_or_id)
    if found is None:
        raise NotFound("no such API key")
    index = keys.index(found)
    entry = dict(found) if isinstance(found, dict) else {"key": found}
    changes = _fields({k: v for k, v in body.items() if k != "key"})
    if isinstance(changes.get("limits"), dict):
        changes["limits"] = _merged_limits(entry.get("limits"), body["limits"])
    entry.update(changes)
    for name in EDITABLE:
        if name in body and body[name] is None:
            entry.pop(name, None)
    keys[index] = _checked({k: v for k, v in entry.items() if k in KEY_FIELDS},
                           keys[:index] + keys[index + 1:])


def _merged_limits(before: Any, patch: dict[str, Any]) -> dict[str, Any]:
    """A PATCH's ``limits`` changes the limits it names (null or "": unlimited)
    and keeps the others: replacing the object lifted a daily quota when
    only the concurrency was meant to change."""
    merged = dict(before) if isinstance(before, dict) else {}
    for name, value in patch.items():
        if value is None or value == "":
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def key_view(key: KeyConfig, limiter: KeyLimiter) -> dict[str, Any]:
    """A key as the admin sees it: never the secret, with limit closeness."""
    limits = key.limits
    used = {"rpm": limiter.requests_last_minute(key.ref),
            "tokens_per_day": limiter.tokens_today(key.ref),
            "concurrent": limiter.active(key.ref)}
    closeness = {name: {"used": used[name], "limit": getattr(limits, name),
                        "percent": round(100 * used[name] / getattr(limits, name), 1)
                        if getattr(limits, name) else None}
                 for name in LIMIT_FIELDS}
    status = "disabled" if key.disabled else "expired" if key.expired() else "active"
    return {"id": key_id(key.secret), "name": key.name, "preview": preview(key.secret),
            "note": key.note, "created": key.created or None, "expires": key.expires or None,
            "models": list(key.models), "status": status, "disabled": key.disabled,
            "limits": {n: getattr(limits, n) for n in LIMIT_FIELDS}, "usage": closeness}
