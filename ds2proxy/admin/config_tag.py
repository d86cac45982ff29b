"""The config document's ETag, so a write made from a stale read is refused.

``POST /admin/config`` replaces whole lists and an import may replace the
whole document: sent from a read taken before another admin's change, they
would silently undo it. Reads of the config carry an ``ETag``; such a write
that sends it back as ``If-Match`` is checked inside the serialised writer,
against the document it is about to change, and refused with 412 when that
document is no longer the one read. Without ``If-Match`` the write applies
as before.

The tag covers what an admin edits: not the admin's own credentials, and not
the upstream tokens the server refreshes by itself on accounts that log in
with a password (a token-only account's token is its identity, and counts).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..errors import ProxyError
from .masking import without_admin_secrets


class PreconditionFailed(ProxyError):
    status = 412
    type = "invalid_request_error"
    code = "config_changed"


def _edited_part(account: Any) -> Any:
    if isinstance(account, dict) and (account.get("email") or account.get("mobile")):
        return {k: v for k, v in account.items() if k != "token"}
    return account


def etag_of(doc: dict[str, Any]) -> str:
    """A strong ETag (quoted) of the admin-edited part of ``doc``."""
    view = without_admin_secrets(doc)
    if isinstance(view.get("accounts"), list):
        view["accounts"] = [_edited_part(a) for a in view["accounts"]]
    digest = hashlib.sha256(orjson.dumps(view, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'


def check_if_match(if_match: str | None, doc: dict[str, Any]) -> None:
    """412 unless ``If-Match`` is absent, ``*`` or names ``doc``'s tag."""
    if if_match is None:
        return
    tags = {t.strip() for t in if_match.split(",")}  # a weak W/"…" tag never matches
    if "*" in tags or etag_of(doc) in tags:
        return
    raise PreconditionFailed("the config changed since it was read (If-Match names an "
                             "older version); read it again and redo the change")
