"""Look-ups of configured accounts and keys for edits that touch many.

An import, a batch import or a whole-list replacement matches every entry
it brings against the configured ones. Found by a scan of the list each
time, that is quadratic: 4,000 accounts took about 50 s on the event loop.
These indexes are built once per edit and answer exactly as the scan did
(the first entry in list order wins).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..config import AccountConfig, normalise_mobile
from ..keyring import secret_of
from .masking import key_id

ACCOUNT_FIELDS = ("email", "mobile", "area_code", "password", "token", "proxy")


def identifier_of(item: Any) -> str:
    """A raw account entry's identifier, as the typed config names it ("" for a non-object)."""
    if not isinstance(item, dict):
        return ""
    return AccountConfig(**{f: str(item.get(f) or "").strip() for f in ACCOUNT_FIELDS}).identifier


def _wanted(identifier: str) -> set[str]:
    """The identifiers a name given by the admin may stand for (a mobile in any format)."""
    return {identifier.strip(), normalise_mobile(identifier)} - {""}


class AccountIndex:
    """Positions of raw account entries by identifier, kept as entries are added."""

    def __init__(self, accounts: list[Any]) -> None:
        self._at: dict[str, int] = {}
        for i, item in enumerate(accounts):
            self.note(item, i)

    def note(self, item: Any, index: int) -> None:
        """``item`` now sits at ``index`` (an earlier entry of its identifier wins)."""
        identifier = identifier_of(item)
        if identifier:
            self._at.setdefault(identifier, index)

    def find(self, identifier: str) -> int | None:
        hits = [self._at[name] for name in _wanted(identifier) if name in self._at]
        return min(hits) if hits else None


class KeyIndex:
    """Configured ``keys`` entries by secret and by id."""

    def __init__(self, keys: Iterable[Any]) -> None:
        self._by: dict[str, Any] = {}
        for entry in keys:
            secret = secret_of(entry)
            if secret:
                self._by.setdefault(secret, entry)
                self._by.setdefault(key_id(secret), entry)

    def find(self, key_or_id: str) -> Any:
        """The entry whose secret or id is ``key_or_id`` (None: none)."""
        return self._by.get(key_or_id)
