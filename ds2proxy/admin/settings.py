"""The runtime settings the admin may change: every setting the schema
(:mod:`ds2proxy.settings_schema`) gives a form place drives the JSON API's
read and partial update and the dashboard's settings form.

A setting lives at a dotted path of the config document. ``PUT`` bodies use
the nested shape ``GET`` returns; only the given fields change, ``null``
resets a field to its default, and the two model maps are replaced whole
(so an entry can be removed). The read-only facts ``GET`` adds are ignored
on the way back in, so a client may send back what it read.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any


from ..config import Config, ConfigError, parse_config
from ..config_fields import suggestion
from ..settings_schema import Leaf, leaves, value_at
from ..errors import InvalidRequest
from .form_snapshot import snapshot
from .responses import FieldErrors


@dataclass(frozen=True, slots=True)
class Setting:
    """One field of the settings form, as the templates read it."""

    path: str
    kind: str  # int | float | bool | choice | map | text
    label: str
    help: str
    choices: tuple[str, ...] = ()
    nullable: bool = False
    example: str = ""


@dataclass(frozen=True, slots=True)
class Group:
    title: str
    settings: tuple[Setting, ...]


# The form's groups in page order; a group named only in the schema comes last.
GROUP_ORDER = ("Account pool", "Account health and pacing", "Models", "Tool calls and APIs",
               "Long conversations", "Web chat", "Admin and diagnostics")


def _form_setting(leaf: Leaf) -> Setting:
    form = leaf.spec.form
    assert form is not None
    label = f"{leaf.label_prefix} {form.label}" if leaf.label_prefix else form.label
    if form.choices_of is not None:  # a choice of what the config holds: form_groups
        return Setting(leaf.path, "choice", label, form.help or leaf.spec.doc)
    return Setting(leaf.path, leaf.entry.kind, label, form.help or leaf.spec.doc,
                   leaf.spec.choices, leaf.entry.nullable or leaf.entry.kind == "text",
                   form.example)


def _groups() -> tuple[Group, ...]:
    by_title: dict[str, list[Setting]] = {title: [] for title in GROUP_ORDER}
    for leaf in leaves(Config):
        if leaf.spec.form is not None and not leaf.spec.secret:
            by_title.setdefault(leaf.spec.form.group, []).append(_form_setting(leaf))
    return tuple(Group(title, tuple(found)) for title, found in by_title.items() if found)


GROUPS: tuple[Group, ...] = _groups()
# Settings whose form choices come from the config, and how.
CHOICES_OF: dict[str, Callable[[Config], tuple[str, ...]]] = {
    leaf.path: leaf.spec.form.choices_of for leaf in leaves(Config)
    if leaf.spec.form is not None and leaf.spec.form.choices_of is not None}
SETTINGS: dict[str, Setting] = {s.path: s for g in GROUPS for s in g.settings}
MAPS = frozenset(p for p, s in SETTINGS.items() if s.kind == "map")
READ_ONLY = frozenset({"admin.password_set", "admin.default_key_in_use", "env_backed",
                       "config_source"})


def flat_values(cfg: Config) -> dict[str, Any]:
    """Every setting's effective value, keyed by dotted path."""
    values = {path: value_at(cfg, path) for path in SETTINGS}
    return {path: dict(v) if path in MAPS else v for path, v in values.items()}


def form_groups(cfg: Config) -> tuple[Group, ...]:
    """GROUPS as the form shows them, with the choices that come from the
    config (the embeddings engine: off, testing, each configured provider)."""
    def offered(setting: Setting) -> Setting:
        choices_of = CHOICES_OF.get(setting.path)
        return setting if choices_of is None else replace(setting, choices=choices_of(cfg))

    return tuple(Group(g.title, tuple(offered(s) for s in g.settings)) for g in GROUPS)


def nested_view(cfg: Config, *, password_set: bool, default_key_in_use: bool,
                config_source: str, memory_only: bool = False) -> dict[str, Any]:
    """The ``GET /admin/settings`` document; ``config_source`` says where the
    config lives (file, environment, demo, none, memory) and ``env_backed``
    whether changes stay in memory only."""
    view: dict[str, Any] = {}
    for path, value in flat_values(cfg).items():
        head, _, tail = path.partition(".")
        if tail:
            view.setdefault(head, {})[tail] = value
        else:
            view[head] = value
    view["admin"].update(password_set=password_set, default_key_in_use=default_key_in_use)
    view["config_source"] = config_source
    view["env_backed"] = memory_only
    return view


def _unknown(path: str) -> str:
    names = [*SETTINGS, *READ_ONLY] if "." in path else \
        sorted({p.partition(".")[0] for p in SETTINGS})
    close = suggestion(path, names)
    return "unknown setting" + (f" (did you mean '{close}'?)" if close else "")


def flatten_patch(body: Any) -> dict[str, Any]:
    """A nested ``PUT`` body as {dotted path: value}; unknown fields are a 400
    naming each of them (with the closest known one)."""
    if not isinstance(body, dict):
        raise InvalidRequest("settings must be a JSON object")
    heads = {p.partition(".")[0] for p in SETTINGS}
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for head, value in body.items():
        if head in MAPS or head in READ_ONLY:
            changes[head] = value
        elif head not in heads:
            errors[head] = _unknown(head)
        elif not isinstance(value, dict):
            errors[head] = "must be an object"
        else:
            changes.update({f"{head}.{tail}": inner for tail, inner in value.items()})
    for path in list(changes):
        if path in READ_ONLY:
            del changes[path]
        elif path not in SETTINGS:
            errors[path] = _unknown(path)
    if errors:
        raise FieldErrors(errors)
    return changes


# The lists no setting refers to (validated by every write all the same).
UNRELATED = ("accounts", "keys")


def field_errors(doc: dict[str, Any], changes: dict[str, Any],
                 is_native: Callable[[str], bool]) -> dict[str, str]:
    """Each change checked on its own against ``doc`` (only read), so every
    bad field is named in one answer rather than one per save. A setting
    never names an account or a key, so the trials leave those lists out: a
    form of thirty settings parsed thousands of accounts thirty times, on
    the event loop."""
    errors: dict[str, str] = {}
    doc = {k: v for k, v in doc.items() if k not in UNRELATED}
    for path, value in changes.items():
        try:
            if path in MAPS:
                check_maps({path: value}, is_native)
            head = path.partition(".")[0]
            trial = {**doc, head: copy.deepcopy(doc.get(head))}
            apply_changes(trial, {path: value})
            parse_config(trial)
        except InvalidRequest as exc:
            where = exc.param or path
            errors[where] = exc.message.removeprefix(f"{where}: ")
        except ConfigError as exc:
            errors[exc.field] = str(exc).removeprefix(f"config field '{exc.field}': ")
    return errors


def check_maps(changes: dict[str, Any], is_native: Callable[[str], bool]) -> None:
    """Map entries must name native models, so a typo is refused, not ignored."""
    for path in MAPS & changes.keys():
        value = changes[path]
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InvalidRequest(f"{path} must be an object of name → model", param=path)
        for name, target in value.items():
            where = f"{path}.{name}"
            if not name.strip():
                raise InvalidRequest(f"{path} has an empty name", param=path)
            if not isinstance(target, str):
                raise InvalidRequest(f"{where}: expected a model name (a string)", param=where)
            if not is_native(target):
                raise InvalidRequest(f"{where}: {target[:100]!r} is not a native model",
                                     param=where)


def apply_changes(data: dict[str, Any], changes: dict[str, Any]) -> None:
    """Write flat changes into a raw config document; ``None`` removes the field."""
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value


# -- the dashboard form ------------------------------------------------------------


def map_text(mapping: Mapping[str, str]) -> str:
    return "\n".join(f"{name} = {target}" for name, target in mapping.items())


def _parse_map(text: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, target = line.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ValueError(f"line {number}: write it as name = model")
        mapping[name.strip()] = target.strip()
    return mapping


def _from_text(setting: Setting, raw: str) -> Any:
    if setting.kind == "bool":
        return raw.lower() in ("on", "true", "1", "yes")
    if setting.kind == "choice":
        return raw
    if setting.kind == "map":
        return _parse_map(raw)
    if setting.kind == "text" and raw:
        return raw
    if not raw:
        if setting.nullable:
            return None
        raise ValueError("a value is required")
    try:
        return int(raw) if setting.kind == "int" else float(raw)
    except ValueError:
        noun = "a whole number" if setting.kind == "int" else "a number"
        raise ValueError(f"must be {noun}") from None


def parse_form(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Every setting from a submitted form: (changes, errors by dotted path)."""
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for path, setting in SETTINGS.items():
        try:
            changes[path] = _from_text(setting, str(form.get(path, "")).strip())
        except ValueError as exc:
            errors[path] = str(exc)
    return changes, errors


SHOWN_FIELD = "settings_shown"


def shown_snapshot(cfg: Config) -> str:
    """What the settings form shows, for its hidden ``settings_shown`` field."""
    return snapshot(flat_values(cfg))


def form_field_of(param: str) -> str:
    """The form field an error belongs to (``model_aliases.x`` → ``model_aliases``)."""
    for path in SETTINGS:
        if param == path or param.startswith(path + "."):
            return path
    return param
