"""Which config fields exist, so a misspelt one is reported, not ignored.

Unknown fields are kept (a newer version's fields survive a write) but each
is named with the closest known field (``difflib``): ``upstream.timout``
gets "did you mean 'upstream.timeout_seconds'?". Fields starting with ``_``
are comments and never reported.
"""

from __future__ import annotations

import difflib
from typing import Any

from .config import Config
from .keyring import repeated_secrets
from .settings_schema import known_tree, list_item_fields

# Each section: its known members (ANY: anything goes below this point).
SCHEMA: dict[str, Any] = known_tree(Config)
ITEM_FIELDS: dict[str, tuple[str, ...]] = list_item_fields(Config)
ACCOUNT_FIELDS = ITEM_FIELDS["accounts"]


def _all_paths(schema: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for name, inner in schema.items():
        paths.append(prefix + name)
        if isinstance(inner, dict):
            paths.extend(_all_paths(inner, f"{prefix}{name}."))
    return paths


KNOWN_PATHS = tuple(_all_paths(SCHEMA))


def suggestion(path: str, candidates: tuple[str, ...] | list[str] = KNOWN_PATHS) -> str | None:
    """The closest known name to ``path``: first among its siblings, then any
    field whose last part is close (a setting put in the wrong section)."""
    parent = path.rpartition(".")[0]
    siblings = [c for c in candidates if c.rpartition(".")[0] == parent]
    found = difflib.get_close_matches(path, siblings, n=1, cutoff=0.6)
    if not found:
        leaf = path.rpartition(".")[2]
        by_leaf = {c.rpartition(".")[2]: c for c in candidates}
        found = [by_leaf[m] for m in difflib.get_close_matches(leaf, list(by_leaf), n=1,
                                                                 cutoff=0.75)]
    return found[0] if found else None


def unknown_fields(data: Any) -> list[str]:
    """Dotted paths of the fields this version does not know."""
    if not isinstance(data, dict):
        return []
    found: list[str] = []
    _walk(data, SCHEMA, "", found)
    for head, known in ITEM_FIELDS.items():
        items = data.get(head)
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict):
                found.extend(f"{head}[{i}].{name}" for name in item
                             if name not in known and not str(name).startswith("_"))
    return found


def _walk(node: dict, schema: dict[str, Any], prefix: str, found: list[str]) -> None:
    for name, value in node.items():
        if str(name).startswith("_"):
            continue
        if name not in schema:
            found.append(prefix + str(name))
        elif isinstance(schema[name], dict) and isinstance(value, dict):
            _walk(value, schema[name], f"{prefix}{name}.", found)


def describe_unknown(path: str) -> str:
    """``unknown config field 'x' (did you mean 'y'?); it is ignored``."""
    if "[" in path.partition(".")[0]:
        head, _, leaf = path.rpartition(".")
        close = suggestion(leaf, ITEM_FIELDS.get(path.partition("[")[0], ()))
        guess = f"{head}.{close}" if close else None
    else:
        guess = suggestion(path)
    hint = f" (did you mean '{guess}'?)" if guess else ""
    return f"unknown config field '{path}'{hint}; it is kept but ignored"


MAX_REPORTED = 20  # a document made of junk gets a bounded report
MAX_NAME_CHARS = 120


def unknown_field_messages(data: Any) -> list[str]:
    """One message per unknown field, the first ``MAX_REPORTED`` of them."""
    paths = unknown_fields(data)
    messages = [describe_unknown(shortened(path)) for path in paths[:MAX_REPORTED]]
    if len(paths) > MAX_REPORTED:
        messages.append(f"and {len(paths) - MAX_REPORTED} more unknown config fields")
    return messages


def load_warnings(data: Any) -> list[str]:
    """What a loaded or imported document holds that will be ignored: unknown
    fields, and keys entries that repeat an earlier entry's key."""
    repeats = repeated_secrets(data.get("keys")) if isinstance(data, dict) else []
    return unknown_field_messages(data) + repeats


def shortened(path: str) -> str:
    """The name as a log line can carry it: control characters escaped (a
    newline in an imported name must not forge a second log line), cut short."""
    path = "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)
    return path if len(path) <= MAX_NAME_CHARS else path[:MAX_NAME_CHARS - 1] + "…"
