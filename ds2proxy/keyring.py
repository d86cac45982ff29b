"""Named API keys: who a key belongs to, what it may use, and its limits.

A key in the config's ``keys`` is either a bare secret string (older configs) or an
object ``{"key", "name", "note", "created", "expires", "models", "limits",
"disabled"}``. Both are read; every config write turns bare strings into
objects (:func:`migrate_keys`), keeping the secret, so nothing is lost.
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

KEY_FIELDS = ("key", "name", "note", "created", "expires", "models", "limits", "disabled")
LIMIT_FIELDS = ("rpm", "tokens_per_day", "concurrent")
MAX_LIMIT = 10**12  # the largest value a key limit may take
NAME_MAX = 64
LAST_MOMENT = 253402300799  # 9999-12-31 23:59:59 UTC, the last one a date can show
# What the usage log, the metrics and the limiter call a caller without a key
# (its own DeepSeek token): no key may carry it, or it would be charged for them.
PASS_THROUGH = "pass-through"


class KeyEntryError(ValueError):
    """A key entry is invalid; ``where`` names the field."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(problem)
        self.where = where


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """Zero means unlimited."""

    rpm: int = 0
    tokens_per_day: int = 0
    concurrent: int = 0


@dataclass(frozen=True, slots=True)
class KeyConfig:
    secret: str
    name: str
    note: str = ""
    created: float = 0.0
    expires: float = 0.0  # 0: never
    models: tuple[str, ...] = ()  # empty: every model; entries may be globs
    limits: KeyLimits = field(default_factory=KeyLimits)
    disabled: bool = False

    def __repr__(self) -> str:  # never print the secret
        return f"KeyConfig(name={self.name!r})"

    @property
    def ref(self) -> str:
        """A stable, non-secret id of the key (its limits are counted under it):
        the same across renames, and the same as its callers' identity."""
        return identity_of(self.secret)

    def expired(self, now: float | None = None) -> bool:
        return bool(self.expires) and (time.time() if now is None else now) >= self.expires

    def allows_model(self, *names: str) -> bool:
        """True when any of ``names`` (asked or native) matches an allowed pattern."""
        if not self.models:
            return True
        return any(fnmatch.fnmatchcase(n, pattern) for n in names if n for pattern in self.models)


def identity_of(credential: str) -> str:
    """A credential's stable, non-secret id (a hash prefix)."""
    return hashlib.sha256(credential.encode()).hexdigest()[:16]


def secret_of(entry: Any) -> str:
    """The secret of a ``keys`` entry, bare or named ("" when malformed)."""
    if isinstance(entry, str):
        return entry.strip()
    if isinstance(entry, dict) and isinstance(entry.get("key"), str):
        return entry["key"].strip()
    return ""


def default_name(secret: str, taken: set[str]) -> str:
    """A name for a migrated bare key: ``key-<last four>``, made unique."""
    base = f"key-{secret[-4:]}" if len(secret) >= 12 else "key"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def migrate_keys(data: dict[str, Any], now: float | None = None) -> None:
    """Turn bare key strings in ``data["keys"]`` into named objects, in place."""
    items = data.get("keys")
    if not isinstance(items, list) or not any(isinstance(k, str) for k in items):
        return
    taken = {k.get("name") for k in items if isinstance(k, dict)}
    stamp = time.time() if now is None else now
    for i, entry in enumerate(items):
        if isinstance(entry, str) and entry.strip():
            name = default_name(entry.strip(), taken)
            taken.add(name)
            items[i] = {"key": entry.strip(), "name": name, "created": round(stamp)}


def _number(entry: dict, name: str, where: str) -> float:
    """A moment in Unix seconds. One past the year 9999 is refused: it is
    most often milliseconds (a JavaScript ``Date.now()``), which would make an
    expiry meant for next month never come, and no page can show it."""
    value = entry.get(name)
    if value is None:
        return 0.0
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 <= value <= LAST_MOMENT):
        raise KeyEntryError(f"{where}.{name}", "expected Unix seconds from 0 to "
                            f"{LAST_MOMENT} (milliseconds are 1000 times too large)")
    return float(value)


def _limits(entry: dict, where: str) -> KeyLimits:
    raw = entry.get("limits")
    if raw is None:
        return KeyLimits()
    if not isinstance(raw, dict):
        raise KeyEntryError(f"{where}.limits", "expected an object")
    values = {}
    for name in LIMIT_FIELDS:
        value = raw.get(name)
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
            raise KeyEntryError(f"{where}.limits.{name}", "expected a non-negative integer")
        values[name] = value
    return KeyLimits(**values)


def _models(entry: dict, where: str) -> tuple[str, ...]:
    raw = entry.get("models")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(m, str) and m.strip() for m in raw):
        raise KeyEntryError(f"{where}.models", "expected a list of model names or globs")
    return tuple(m.strip() for m in raw)


def _text(entry: dict, name: str, where: str, limit: int) -> str:
    value = entry.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise KeyEntryError(f"{where}.{name}", f"expected a string of at most {limit} characters")
    return value.strip()


def parse_key(entry: Any, where: str, taken: set[str],
              reserved: frozenset[str] = frozenset()) -> KeyConfig:
    """One ``keys`` entry as a KeyConfig; bare strings get a default name,
    never one in ``taken`` or ``reserved`` (names later entries give themselves)."""
    secret = secret_of(entry)
    if not secret:
        raise KeyEntryError(where, "expected a non-empty key string or an object with 'key'")
    if isinstance(entry, str):
        return KeyConfig(secret=secret, name=default_name(secret, taken | reserved))
    name = _text(entry, "name", where, NAME_MAX) or default_name(secret, taken | reserved)
    if name in taken:
        raise KeyEntryError(f"{where}.name", f"duplicate key name {name!r}")
    if name == PASS_THROUGH:
        raise KeyEntryError(f"{where}.name", f"{PASS_THROUGH!r} is the name the usage log "
                            "gives callers with their own DeepSeek token; choose another")
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise KeyEntryError(f"{where}.disabled", "expected a boolean")
    return KeyConfig(secret=secret, name=name, note=_text(entry, "note", where, 500),
                     created=_number(entry, "created", where),
                     expires=_number(entry, "expires", where), models=_models(entry, where),
                     limits=_limits(entry, where), disabled=disabled)


def repeated_secrets(items: Any) -> list[str]:
    """One message per ``keys`` entry whose secret an earlier entry already
    has: parsing keeps the first, so the repeat's name and limits are ignored."""
    first: dict[str, int] = {}
    messages: list[str] = []
    for i, entry in enumerate(items if isinstance(items, list) else ()):
        secret = secret_of(entry)
        if secret and secret in first:
            messages.append(f"keys[{i}] has the same key as keys[{first[secret]}]; only the "
                            "first is used")
        elif secret:
            first[secret] = i
    return messages


def parse_keys(items: list[Any]) -> tuple[KeyConfig, ...]:
    """Every entry, first occurrence of a secret wins."""
    parsed: list[KeyConfig] = []
    taken: set[str] = set()
    seen: set[str] = set()
    reserved = frozenset(entry["name"].strip() for entry in items
                         if isinstance(entry, dict) and isinstance(entry.get("name"), str))
    for i, entry in enumerate(items):
        key = parse_key(entry, f"keys[{i}]", taken, reserved)
        if key.secret in seen:
            continue
        seen.add(key.secret)
        taken.add(key.name)
        parsed.append(key)
    return tuple(parsed)
