"""Edits of the raw config document, each run inside ``ConfigStore.update``.

They are plain functions of the document so that every admin write, from the
JSON API or a dashboard form, goes through the one atomic, serialised writer:
an edit that raises leaves the config untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from ..config import normalise_mobile
from ..config_fields import suggestion
from ..doc_merge import deep_merge
from ..keyring import secret_of
from ..errors import InvalidRequest, NotFound, ProxyError
from .edit_index import ACCOUNT_FIELDS, AccountIndex, KeyIndex, identifier_of
from .masking import ADMIN_SECRETS, key_id, kept_proxy, restore_tree
IMPORT_MODES = ("merge", "replace")


class Conflict(ProxyError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


def _list(data: dict[str, Any], name: str) -> list[Any]:
    """The document's ``keys`` or ``accounts`` list, made when absent."""
    items = data.get(name)
    if not isinstance(items, list):
        items = data[name] = []
    return items


def _keys(data: dict[str, Any]) -> list[Any]:
    return _list(data, "keys")


def _accounts(data: dict[str, Any]) -> list[Any]:
    return _list(data, "accounts")


# -- keys ---------------------------------------------------------------------------


def clean_key(key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InvalidRequest("'key' must be a non-empty string", param="key")
    key = key.strip()
    if "…" in key:
        raise InvalidRequest("that is a masked preview, not a key", param="key")
    if not key.isprintable() or any(c.isspace() for c in key):
        # It travels in Authorization headers, where these cannot go.
        raise InvalidRequest("an API key must not contain spaces or control characters",
                             param="key")
    return key


def clean_entry(entry: Any) -> Any:
    """A ``keys`` entry, bare or named, whose secret passed :func:`clean_key`."""
    if isinstance(entry, dict):
        return {**entry, "key": clean_key(entry.get("key"))}
    return clean_key(entry)


def find_entry(keys: Iterable[Any], key_or_id: str) -> Any:
    """The configured ``keys`` entry (bare or named) given its secret or its id."""
    for entry in keys:
        secret = secret_of(entry)
        if secret and (secret == key_or_id or key_id(secret) == key_or_id):
            return entry
    return None


def find_key(keys: Iterable[Any], key_or_id: str) -> str | None:
    """The configured key's secret given either itself or its id."""
    entry = find_entry(keys, key_or_id)
    return secret_of(entry) if entry is not None else None


def add_key(data: dict[str, Any], key: str | dict[str, Any]) -> int:
    keys = _keys(data)
    if secret_of(key) in {secret_of(k) for k in keys}:
        raise Conflict("that API key is already configured")
    keys.append(key)
    return len(keys)


def remove_key(data: dict[str, Any], key_or_id: str) -> int:
    keys = _keys(data)
    found = find_entry(keys, key_or_id)
    if found is None:
        raise NotFound("no such API key")
    keys.remove(found)
    return len(keys)


# -- accounts -------------------------------------------------------------------------


def clean_account(item: Any) -> dict[str, str]:
    """An account from a request: known fields, stripped, and usable."""
    if not isinstance(item, dict):
        raise InvalidRequest("an account must be a JSON object")
    for name in item:
        if name not in ACCOUNT_FIELDS:  # a misspelt "proxy" must not mean no proxy
            close = suggestion(str(name), ACCOUNT_FIELDS)
            raise InvalidRequest(f"unknown account field '{str(name)[:64]}'" + (
                f" (did you mean '{close}'?)" if close else ""), param=str(name)[:64])
    clean: dict[str, str] = {}
    for name in ACCOUNT_FIELDS:
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"account field '{name}' must be a string", param=name)
        if value and value.strip():
            clean[name] = value.strip()
    if "email" in clean and "@" not in clean["email"]:
        raise InvalidRequest("that e-mail address has no @", param="email")
    if "mobile" in clean and not normalise_mobile(clean["mobile"]):
        raise InvalidRequest("the mobile number has no digits", param="mobile")
    if not ({"email", "mobile"} & clean.keys() and "password" in clean) and "token" not in clean:
        raise InvalidRequest("an account needs an e-mail or mobile with a password, or a token",
                             param="password" if {"email", "mobile"} & clean.keys() else "email")
    return clean


def _index_of(accounts: list[Any], identifier: str) -> int | None:
    return AccountIndex(accounts).find(identifier)


def add_account(data: dict[str, Any], account: dict[str, str]) -> int:
    accounts = _accounts(data)
    identifier = identifier_of(account)
    if _index_of(accounts, identifier) is not None:
        raise Conflict(f"account {identifier} is already configured")
    accounts.append(account)
    return len(accounts)


def remove_account(data: dict[str, Any], identifier: str) -> int:
    accounts = _accounts(data)
    index = _index_of(accounts, identifier)
    if index is None:
        raise NotFound(f"no account {identifier}")
    del accounts[index]
    return len(accounts)


def set_account_proxy(data: dict[str, Any], identifier: str, proxy: str) -> None:
    """Set (or with "" remove) one account's outbound proxy; its masked form
    (as reads show it) keeps the stored one, password included."""
    accounts = _accounts(data)
    index = _index_of(accounts, identifier)
    if index is None:
        raise NotFound(f"no account {identifier}")
    if proxy:
        accounts[index]["proxy"] = kept_proxy(proxy, accounts[index].get("proxy"))
    else:
        accounts[index].pop("proxy", None)


def upsert_accounts(data: dict[str, Any], incoming: Iterable[dict[str, str]]) -> tuple[int, int]:
    """Add new accounts, update known ones field by field: (added, updated)."""
    accounts = _accounts(data)
    known = AccountIndex(accounts)
    added = updated = 0
    for account in incoming:
        index = known.find(identifier_of(account))
        if index is None:
            accounts.append(account)
            known.note(account, len(accounts) - 1)
            added += 1
        else:
            accounts[index] = {**accounts[index], **account}
            updated += 1
    return added, updated


def merge_keys(data: dict[str, Any], incoming: Iterable[Any]) -> int:
    keys = _keys(data)
    have = {secret_of(k) for k in keys}
    fresh = [k for k in incoming if secret_of(k) and secret_of(k) not in have]
    fresh = list({secret_of(k): k for k in reversed(fresh)}.values())[::-1]
    keys.extend(fresh)
    return len(fresh)


# -- whole-list replacement (POST /admin/config) -------------------------------------------


def resolve_keys(current: list[Any], given: Any) -> list[Any]:
    """A replacement key list; ``{"id": …}`` entries stand for keys already
    configured (their name, limits and note kept)."""
    if not isinstance(given, list):
        raise InvalidRequest("'keys' must be a list", param="keys")
    known = KeyIndex(current)
    keys: dict[str, Any] = {}
    for entry in given:
        if isinstance(entry, dict) and "key" not in entry:
            found = known.find(str(entry.get("id") or ""))
            if found is None:
                raise InvalidRequest("'keys' names an unknown key id", param="keys")
            keys.setdefault(secret_of(found), copy.deepcopy(found))
        else:
            entry = clean_entry(entry)
            keys.setdefault(secret_of(entry), entry)
    return list(keys.values())


def resolve_accounts(current: list[Any], given: Any) -> list[dict[str, str]]:
    """A replacement account list; an entry without secrets keeps the stored ones.

    Entries are matched by ``identifier`` (as the masked read shows it) or by
    their e-mail / mobile, so a masked read can be edited and sent back.
    """
    if not isinstance(given, list):
        raise InvalidRequest("'accounts' must be a list", param="accounts")
    known = AccountIndex(current)
    result: list[dict[str, str]] = []
    for entry in given:
        if not isinstance(entry, dict):
            raise InvalidRequest("each account must be a JSON object", param="accounts")
        fields = {k: v for k, v in entry.items() if k in ACCOUNT_FIELDS and v}
        wanted = entry.get("identifier") if isinstance(entry.get("identifier"), str) else ""
        index = known.find(wanted or identifier_of(fields))
        if index is not None:
            stored = current[index]
            fields = {**{k: stored[k] for k in ACCOUNT_FIELDS if stored.get(k)}, **fields}
            if isinstance(fields.get("proxy"), str):
                fields["proxy"] = kept_proxy(fields["proxy"], stored.get("proxy"))
        result.append(clean_account(fields))
    return result


def account_from_read(current: list[Any], entry: Any, known: AccountIndex | None = None
                      ) -> Any:
    """An imported account. One copied from a masked read (it carries
    ``identifier``) is reduced to its config fields and gets back, from the
    stored account it names, the password and token the read left out and
    the proxy password it masked; other entries are taken as they are.
    ``known``: ``current``'s index, when many entries are looked up."""
    if not is_read(entry):
        return entry
    fields = read_fields(entry)
    index = (known or AccountIndex(current)).find(entry["identifier"])
    stored = current[index] if index is not None and isinstance(current[index], dict) else {}
    fields = {**{k: stored[k] for k in ("password", "token") if stored.get(k)}, **fields}
    if fields.get("proxy") or stored.get("proxy"):
        fields["proxy"] = kept_proxy(fields.get("proxy", ""), stored.get("proxy"))
    return fields


def is_read(entry: Any) -> bool:
    """An account entry copied from a masked read (it names its ``identifier``)."""
    return isinstance(entry, dict) and isinstance(entry.get("identifier"), str)


def read_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """A read's config fields; the rest (health, previews, flags) is derived."""
    return {k: v for k, v in entry.items() if k in ACCOUNT_FIELDS and v}


def without_read_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as an import keeps it: account reads reduced to their config fields."""
    if not isinstance(doc.get("accounts"), list):
        return doc
    return {**doc, "accounts": [read_fields(a) if is_read(a) else a for a in doc["accounts"]]}


# -- import (merge | replace) --------------------------------------------------------------


# What GET /admin/config/export sends beside its ``config``: copies of it as text.
EXPORT_COPIES = frozenset({"json", "base64"})


def unwrap_import(body: dict[str, Any], mode: str | None) -> tuple[dict[str, Any], str]:
    """Accept a bare config, ``{"config": {...}, "mode": ...}``, or an export's
    reply sent back as it came (its text copies are left aside). No config
    has a top-level ``config`` field, so a body with one is a wrapper: its
    config must be an object and nothing else may ride beside it. Read as a
    bare config instead, a wrapper with a config in text (or an export reply)
    was merged as fields named ``config`` and ``mode``: a 200 that restored
    nothing and left those fields in the file."""
    doc = body
    if "config" in body:
        if not isinstance(body["config"], dict):
            raise InvalidRequest("'config' must be the config as a JSON object (or send the "
                                 "config itself as the body)", param="config")
        extra = sorted(set(body) - {"config", "mode"} - EXPORT_COPIES)
        if extra:
            raise InvalidRequest(f"{extra[0]!r} does not belong beside 'config': send "
                                 "{\"config\": {...}, \"mode\": \"merge\" or \"replace\"} "
                                 "or the config itself", param=extra[0])
        doc = body["config"]
        mode = mode or body.get("mode")
    mode = mode or "merge"
    if mode not in IMPORT_MODES:
        raise InvalidRequest("mode must be merge or replace", param="mode")
    return doc, mode


def _unmasked(current: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
    """``incoming`` with the previews of a masked ``GET /admin/config`` turned
    back into the stored secrets (providers: see ``provider_edits``)."""
    lists = ("keys", "accounts", "providers", "admin")
    doc = restore_tree({k: v for k, v in current.items() if k not in lists},
                       {k: v for k, v in incoming.items() if k not in lists})
    doc.update({k: incoming[k] for k in lists if k in incoming})
    if isinstance(doc.get("accounts"), list):
        stored = _accounts({"accounts": copy.deepcopy(current.get("accounts"))})
        known = AccountIndex(stored)
        doc["accounts"] = [account_from_read(stored, a, known) for a in doc["accounts"]]
    return doc


def _new_entries(current: list[Any], given: list[Any]) -> list[Any]:
    """The key entries an import merge adds; an ``{"id": …}`` entry (a masked
    read) stands for a key already configured and adds nothing."""
    known = KeyIndex(current)
    fresh = []
    for entry in given:
        if isinstance(entry, dict) and "key" not in entry:
            if known.find(str(entry.get("id") or "")) is None:
                raise InvalidRequest("'keys' names an unknown key id", param="keys")
        else:
            fresh.append(clean_entry(entry))
    return fresh


def _check_lists(incoming: dict[str, Any]) -> None:
    """A merge reads ``keys`` and ``accounts`` item by item: a wrong shape is
    a 400 naming it, never silently skipped (a replace's config check does
    the same for the whole document)."""
    for name in ("keys", "accounts"):
        if name in incoming and not isinstance(incoming[name], list):
            raise InvalidRequest(f"'{name}' must be a list", param=name)
    for i, item in enumerate(incoming.get("accounts") or []):
        if not isinstance(item, dict):
            raise InvalidRequest(f"accounts[{i}]: an account must be a JSON object",
                                 param=f"accounts[{i}]")


def import_document(current: dict[str, Any], incoming: dict[str, Any], mode: str
                    ) -> dict[str, Any]:
    """The config after an import. The admin's own credentials always stay,
    and so do the secrets a masked read sent back only shows as previews."""
    incoming = _unmasked(current, incoming)
    if mode == "replace":
        result = copy.deepcopy(incoming)
        if isinstance(result.get("keys"), list):
            result["keys"] = resolve_keys(_keys({"keys": copy.deepcopy(current.get("keys"))}),
                                          result["keys"])
    else:
        _check_lists(incoming)
        rest = {k: v for k, v in incoming.items() if k not in ("keys", "accounts")}
        result = deep_merge(current, rest)
        if "keys" in incoming:
            merge_keys(result, _new_entries(_keys(result), incoming["keys"]))
        if "accounts" in incoming:
            upsert_accounts(result, incoming["accounts"])
    admin = result.get("admin") if isinstance(result.get("admin"), dict) else {}
    kept = current.get("admin") if isinstance(current.get("admin"), dict) else {}
    admin = {k: v for k, v in admin.items() if k not in ADMIN_SECRETS}
    admin.update({k: kept[k] for k in ADMIN_SECRETS if k in kept})
    result["admin"] = admin
    return result
