"""Upstream providers in the raw config document: checked, added, updated,
removed, each run inside ``ConfigStore.update`` like every other admin edit.

A provider's secrets are its ``api_key`` and its header values. Admin reads
show them only as previews (:func:`masked_provider`); an update that sends a
preview back (or leaves the key out) keeps the stored secret, so an edited
read can be written again without retyping it.
"""

from __future__ import annotations

import re
from typing import Any

from ..config_fields import suggestion
from ..errors import InvalidRequest, NotFound
from ..providers.settings import LIMIT_FIELD_MODES
from .edits import Conflict
from .masking import MASK, preview
from .responses import FieldErrors

FIELDS = ("name", "kind", "base_url", "api_key", "models", "headers", "timeout_seconds",
          "max_inflight", "reasoning", "tools", "embeddings_batch_size", "max_tokens_field")
# What reads add: ignored when a read is sent back.
READ_ONLY = ("has_api_key", "last_test", "serves", "state", "cooldown_seconds", "reason",
             "inflight")
KINDS = ("openai",)
REASONING = ("field", "think_tags", "none")
NAME = re.compile(r"[a-z0-9_-]{1,64}")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
MAX_MODELS = 1000
MAX_TIMEOUT = 86400.0
MAX_INFLIGHT = 100_000
MAX_BATCH = 100_000


def _providers(data: dict[str, Any]) -> list[Any]:
    items = data.get("providers")
    if not isinstance(items, list):
        items = data["providers"] = []
    return items


def name_of(item: Any) -> str:
    return str(item.get("name") or "") if isinstance(item, dict) else ""


def find(data: dict[str, Any], name: str) -> dict[str, Any]:
    for item in _providers(data):
        if name_of(item) == name:
            return item
    raise NotFound(f"no provider named {name!r}")


# -- masking ---------------------------------------------------------------------------


def masked_provider(item: dict[str, Any]) -> dict[str, Any]:
    """The provider as admin reads show it: key and header values previewed."""
    view = {k: v for k, v in item.items() if k not in ("api_key", "headers")}
    key = item.get("api_key") if isinstance(item.get("api_key"), str) else ""
    view["api_key"] = preview(key)
    view["has_api_key"] = bool(key)
    headers = item.get("headers") if isinstance(item.get("headers"), dict) else {}
    view["headers"] = {k: preview(str(v)) for k, v in headers.items()}
    return view


def _is_mask(value: Any, stored: Any) -> bool:
    """A preview sent back in place of the stored secret."""
    return isinstance(value, str) and MASK in value and isinstance(stored, str) and (
        value == preview(stored))


# -- checks, one per field ---------------------------------------------------------------


def _text(value: Any, name: str, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"'{name}' is required", param=name)
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string", param=name)
    return value.strip()


def _name(value: Any) -> str:
    name = _text(value, "name", required=True)
    if not NAME.fullmatch(name):
        raise InvalidRequest("'name' must be 1-64 of a-z, 0-9, '_' or '-' (it is how "
                             "model_routes and embeddings.provider name it)", param="name")
    return name


def _base_url(value: Any) -> str:
    url = _text(value, "base_url", required=True).rstrip("/")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise InvalidRequest("'base_url' must be an http:// or https:// URL such as "
                             "https://api.deepseek.com/v1", param="base_url")
    if "@" in url.split("/")[2]:
        # It is shown and logged as it is: credentials belong in the secret fields.
        raise InvalidRequest("'base_url' must not carry a user or password: put the "
                             "credential in api_key or headers", param="base_url")
    return url


def _api_key(value: Any) -> str:
    key = _text(value, "api_key")
    if key and (not key.isprintable() or any(c.isspace() for c in key)):
        raise InvalidRequest("'api_key' must not contain spaces or control characters",
                             param="api_key")
    if MASK in key:
        raise InvalidRequest("'api_key' is a masked preview, not a key", param="api_key")
    return key


def _models(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InvalidRequest("'models' must be a non-empty list of model names or globs "
                             "such as \"qwen-*\"", param="models")
    if len(items) > MAX_MODELS:
        raise InvalidRequest(f"'models' may hold at most {MAX_MODELS} names", param="models")
    names = []
    for item in items:
        if not isinstance(item, str) or not item.strip() or any(c.isspace() for c in item.strip()):
            raise InvalidRequest("each of 'models' must be a name without spaces",
                                 param="models")
        names.append(item.strip())
    return list(dict.fromkeys(names))


def _headers(value: Any, stored: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("'headers' must be an object of header names to values",
                             param="headers")
    kept = stored if isinstance(stored, dict) else {}
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not HEADER_NAME.fullmatch(name):
            raise InvalidRequest(f"header name {name[:40]!r} is not a valid token",
                                 param="headers")
        if not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            raise InvalidRequest(f"header {name} must be a one-line string", param="headers")
        headers[name] = kept[name] if _is_mask(text, kept.get(name)) else text.strip()
    return headers


def _number(value: Any, name: str, lo: float, hi: float, *, whole: bool) -> int | float:
    if isinstance(value, str) and value.strip():
        try:
            value = int(value) if whole else float(value)
        except ValueError:
            pass
    ok = isinstance(value, int) if whole else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not lo <= value <= hi:
        kind = "a whole number" if whole else "a number"
        raise InvalidRequest(f"'{name}' must be {kind} between {lo:g} and {hi:g}", param=name)
    return value


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidRequest(f"'{name}' must be one of {', '.join(choices)}", param=name)
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be true or false", param=name)
    return value


# -- a whole provider -------------------------------------------------------------------------


def _check_field(name: str, value: Any, stored: dict[str, Any]) -> Any:
    if name == "name":
        return _name(value)
    if name == "kind":
        return _choice(value, "kind", KINDS)
    if name == "base_url":
        return _base_url(value)
    if name == "api_key":
        return stored.get("api_key", "") if value is None or _is_mask(
            value, stored.get("api_key")) else _api_key(value)
    if name == "models":
        return _models(value)
    if name == "headers":
        return _headers(value, stored.get("headers"))
    if name == "timeout_seconds":
        return _number(value, name, 0.1, MAX_TIMEOUT, whole=False)
    if name == "max_inflight":
        return _number(value, name, 1, MAX_INFLIGHT, whole=True)
    if name == "embeddings_batch_size":
        return _number(value, name, 1, MAX_BATCH, whole=True)
    if name == "reasoning":
        return _choice(value, "reasoning", REASONING)
    if name == "max_tokens_field":
        return _choice(value, name, LIMIT_FIELD_MODES)
    return _flag(value, name)  # tools


def _unknown(name: str) -> str:
    close = suggestion(name, FIELDS)
    return "unknown field" + (f" (did you mean '{close}'?)" if close else "")


def clean_provider(item: Any, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """A provider from a request, every field checked (all faults reported at
    once, by field). With ``stored``, fields left out keep their stored values
    and a previewed key or header keeps the stored secret."""
    if not isinstance(item, dict):
        raise InvalidRequest("a provider must be a JSON object")
    base = dict(stored or {})
    errors = {name: _unknown(name) for name in item
              if name not in FIELDS and name not in READ_ONLY}
    merged = {**base, **{k: v for k, v in item.items() if k in FIELDS}}
    merged.setdefault("kind", "openai")
    clean: dict[str, Any] = {}
    for name in FIELDS:
        if name not in merged or (merged[name] is None and name not in ("api_key",)):
            if name in ("name", "base_url", "models"):
                errors.setdefault(name, "is required")
            continue
        try:
            clean[name] = _check_field(name, merged[name], base)
        except InvalidRequest as exc:
            errors[name] = exc.message
    if errors:
        raise FieldErrors(errors)
    if not clean.get("api_key"):
        clean.pop("api_key", None)
    if not clean.get("headers"):
        clean.pop("headers", None)
    return clean


def restore_masked(current: dict[str, Any], result: dict[str, Any]) -> None:
    """After an import: a provider sent back with its key or a header as the
    preview a masked read showed keeps the stored secret (matched by name)."""
    stored = {name_of(p): p for p in current.get("providers") or [] if isinstance(p, dict)}
    for item in result.get("providers") or []:
        old = stored.get(name_of(item))
        if not isinstance(item, dict) or old is None:
            continue
        if _is_mask(item.get("api_key"), old.get("api_key")):
            item["api_key"] = old["api_key"]
        headers, kept = item.get("headers"), old.get("headers")
        if isinstance(headers, dict) and isinstance(kept, dict):
            item["headers"] = {k: kept[k] if _is_mask(v, kept.get(k)) else v
                               for k, v in headers.items()}
        for name in READ_ONLY:
            item.pop(name, None)
        for name in ("api_key", "headers"):  # a read shows "" / {} for what is not set
            if name not in old and not item.get(name, True):
                item.pop(name)


def without_read_only(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as an import keeps it: the fields reads add dropped from providers."""
    if not isinstance(doc.get("providers"), list):
        return doc
    return {**doc, "providers": [{k: v for k, v in p.items() if k not in READ_ONLY}
                                 if isinstance(p, dict) else p for p in doc["providers"]]}


# -- edits of the document --------------------------------------------------------------------


def add_provider(data: dict[str, Any], provider: dict[str, Any]) -> int:
    items = _providers(data)
    if any(name_of(p) == provider["name"] for p in items):
        raise Conflict(f"provider {provider['name']} is already configured")
    items.append(provider)
    return len(items)


def update_provider(data: dict[str, Any], name: str, changes: Any) -> dict[str, Any]:
    """Replace the stored provider ``name`` by itself with ``changes`` applied."""
    items = _providers(data)
    stored = find(data, name)
    updated = clean_provider(changes, stored)
    if updated["name"] != name and any(name_of(p) == updated["name"] for p in items):
        raise Conflict(f"provider {updated['name']} is already configured")
    items[items.index(stored)] = updated
    return updated


def remove_provider(data: dict[str, Any], name: str) -> int:
    items = _providers(data)
    items.remove(find(data, name))
    return len(items)
