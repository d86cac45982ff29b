"""The configuration reference (``docs/configuration.md``), rendered from the
settings schema so it cannot drift from the code:
``python -m ds2proxy config-docs > docs/configuration.md``."""

from __future__ import annotations

import json
from typing import Any

from .config import Config
from .settings_schema import Entry, Leaf, entries, leaves, sections

TITLE = "# Configuration reference"
INTRO = """\
Generated from the settings schema by `python -m ds2proxy config-docs`; do
not edit by hand. The config is one JSON document (`config.json`, or
`DS2PROXY_CONFIG_JSON`); every field is optional. A misspelt field is kept
but reported with the closest known name; fields starting with `_` are
comments. `config.example.json` shows a complete document.

*Reload*: **live** settings apply to the next request after a change (admin
API, dashboard, or an edited file); **start** ones are read at start-up.
*Form*: where the dashboard's settings page shows it.
"""
KIND_NAMES = {"bool": "boolean", "int": "integer", "float": "number", "text": "string",
              "choice": "string", "map": "object (name → model)", "object": "object",
              "list": "list"}


def render() -> str:
    """The whole reference as Markdown."""
    parts = [TITLE, "", INTRO, "## Top level", "", *_table(_top_level()), ""]
    for path, entry, default in sections(Config):
        if "." in path:
            continue
        parts += [f"## `{path}`", "", entry.spec.doc, ""]
        parts += [*_table(list(leaves(entry.view, default, path + "."))), ""]
        parts += _subsections(path, entry, default)
        parts += _managed(path, entry)
    return "\n".join(parts).rstrip() + "\n"


def _top_level() -> list[Leaf]:
    return [Leaf(e.name, e, getattr(Config(), e.name)) for e in entries(Config)
            if e.view is None]


def _table(found: list[Leaf]) -> list[str]:
    rows = ["| Field | Type | Default | Allowed | Reload | Description |",
            "|---|---|---|---|---|---|"]
    rows += [_row(leaf) for leaf in found]
    return rows


def _row(leaf: Leaf) -> str:
    spec, entry = leaf.spec, leaf.entry
    kind = KIND_NAMES.get(entry.kind, entry.kind) + (" or null" if entry.nullable else "")
    notes = [spec.doc]
    if spec.secret:
        notes.append("*Secret: masked or withheld in admin reads and reprs, never logged.*")
    if spec.form is not None:
        notes.append(f"*Form: {spec.form.group}.*")
    cells = [f"`{leaf.path}`", kind, _default(leaf.default, entry), _allowed(entry),
             "live" if spec.hot else "start", " ".join(notes)]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _default(value: Any, entry: Entry) -> str:
    if entry.kind == "list" or (entry.kind in ("map", "object") and not value):
        return "`[]`" if entry.kind == "list" else "`{}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _allowed(entry: Entry) -> str:
    spec = entry.spec
    if spec.choices:
        return ", ".join(f"`{json.dumps(c)}`" for c in spec.choices)
    if spec.min is not None and spec.max is not None:
        return f"{_number(spec.min)} – {_number(spec.max)}"
    if spec.min is not None:
        return f"≥ {_number(spec.min)}"
    if spec.max is not None:
        return f"≤ {_number(spec.max)}"
    return ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _subsections(path: str, entry: Entry, default: Any) -> list[str]:
    assert entry.view is not None
    found = [f"- `{sub}`: {inner.spec.doc}"
             for sub, inner, _ in sections(entry.view, default, path + ".")]
    return [*found, ""] if found else []


def _managed(path: str, entry: Entry) -> list[str]:
    if not entry.spec.managed:
        return []
    lines = ["Written by the server itself (known fields; do not set them by hand):", ""]
    lines += [f"- `{path}.{name}`: {doc}" for name, doc in entry.spec.managed.items()]
    return [*lines, ""]
