"""The settings schema: each config section is a frozen dataclass whose
fields declare themselves.

A setting is one dataclass field: its name is its JSON key, its annotation
its type, and :func:`setting` adds the rest (default, range or choices,
description, whether it reloads live, whether it is a secret, where the
dashboard's settings form shows it). A section is a field whose type is
another such dataclass, declared with :func:`section`. From these
declarations come the parsing of a raw document (errors name the JSON
path), the known-field list behind "did you mean", the admin settings API
and form, and ``docs/configuration.md``.

Adding a setting is one field; adding a section owned by another module is
its dataclass in that module plus one ``section(...)`` line in
:class:`ds2proxy.config.Config`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from .config_values import ConfigError, read_value

SPEC = "ds2proxy.setting"


@dataclass(frozen=True, slots=True)
class FormSpec:
    """Where the dashboard's settings form shows a setting."""

    group: str
    label: str
    help: str = ""  # empty: the setting's description
    example: str = ""  # placeholder of a map's text area
    # The choices the form offers, from the whole config (e.g. the configured
    # providers); the setting's own check still decides what is valid.
    choices_of: Callable[[Any], tuple[str, ...]] | None = None


@dataclass(frozen=True, slots=True)
class Spec:
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    hot: bool = True  # applies to the next request without a restart
    secret: bool = False  # never shown in reprs, admin reads or logs
    form: FormSpec | None = None
    # (path, value) -> value: a further check or normalisation (raise ConfigError)
    check: Callable[[str, Any], Any] | None = None
    # (path, raw value or None) -> value: the reader of a list or object setting
    parse: Callable[[str, Any], Any] | None = None
    item_fields: tuple[str, ...] = ()  # known members of each item of a list
    is_section: bool = False
    label: str = ""  # a section's prefix for its settings' form labels
    managed: Mapping[str, str] = dataclasses.field(default_factory=dict)  # written by the program


def setting(default: Any = dataclasses.MISSING, doc: str = "", *,
            factory: Callable[[], Any] | None = None, min: float | None = None,
            max: float | None = None, choices: tuple[str, ...] = (), hot: bool = True,
            secret: bool = False, form: FormSpec | None = None,
            check: Callable[[str, Any], Any] | None = None,
            parse: Callable[[str, Any], Any] | None = None,
            item_fields: tuple[str, ...] = ()) -> Any:
    """Declare one setting (a dataclass field with its schema entry)."""
    spec = Spec(doc=doc, min=min, max=max, choices=choices, hot=hot, secret=secret, form=form,
                check=check, parse=parse, item_fields=item_fields)
    if factory is not None:
        return dataclasses.field(default_factory=factory, repr=not secret,
                                 metadata={SPEC: spec})
    return dataclasses.field(default=default, repr=not secret, metadata={SPEC: spec})


def section(view: Callable[[], Any], doc: str, *, label: str = "",
            managed: Mapping[str, str] | None = None) -> Any:
    """Declare a nested section; ``view`` builds its defaults (a class or a
    factory of a default instance). ``managed`` names members the program
    writes itself (known and documented, not parsed here)."""
    spec = Spec(doc=doc, is_section=True, label=label, managed=dict(managed or {}))
    return dataclasses.field(default_factory=view, metadata={SPEC: spec})


# -- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One declared field of a section class."""

    name: str
    hint: Any
    spec: Spec

    @property
    def view(self) -> type | None:
        """The section class, when this entry is a section."""
        return self.hint if self.spec.is_section else None

    @property
    def kind(self) -> str:
        """bool, int, float, choice, text, map, object or list."""
        base = _strip_none(self.hint)
        if self.spec.choices:
            return "choice"
        if base in (bool, int, float):
            return base.__name__
        if base is str:
            return "text"
        origin = typing.get_origin(base)
        if origin is dict:
            return "map" if typing.get_args(base) == (str, str) else "object"
        if origin in (tuple, list):
            return "list"
        return "section" if self.spec.is_section else "object"

    @property
    def nullable(self) -> bool:
        return _strip_none(self.hint) is not self.hint


def _strip_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


@cache
def entries(view: type) -> tuple[Entry, ...]:
    """The declared fields of a section class, in declaration order."""
    hints = typing.get_type_hints(view)
    return tuple(Entry(f.name, hints[f.name], f.metadata[SPEC])
                 for f in dataclasses.fields(view) if SPEC in f.metadata)


@dataclass(frozen=True, slots=True)
class Leaf:
    """A setting with its full JSON path and effective default."""

    path: str
    entry: Entry
    default: Any
    label_prefix: str = ""

    @property
    def spec(self) -> Spec:
        return self.entry.spec


def leaves(view: type, defaults: Any = None, prefix: str = "",
           label_prefix: str = "") -> Iterator[Leaf]:
    """Every setting below ``view``, depth first (sections are walked into)."""
    defaults = view() if defaults is None else defaults
    for entry in entries(view):
        default = getattr(defaults, entry.name)
        path = prefix + entry.name
        if entry.view is not None:
            label = " ".join(p for p in (label_prefix, entry.spec.label) if p)
            yield from leaves(entry.view, default, path + ".", label)
        else:
            yield Leaf(path, entry, default, label_prefix)


def sections(view: type, defaults: Any = None, prefix: str = ""
             ) -> Iterator[tuple[str, Entry, Any]]:
    """Every section below ``view`` as (path, entry, default instance)."""
    defaults = view() if defaults is None else defaults
    for entry in entries(view):
        if entry.view is not None:
            default = getattr(defaults, entry.name)
            yield prefix + entry.name, entry, default
            yield from sections(entry.view, default, f"{prefix}{entry.name}.")


def value_at(view: Any, path: str) -> Any:
    """The typed value at a dotted JSON path (``upstream.max_attempts``)."""
    for part in path.split("."):
        view = getattr(view, part)
    return view


# -- parsing ---------------------------------------------------------------------------------


def parse_section(view: type, node: Any, prefix: str = "", defaults: Any = None) -> Any:
    """Build ``view`` from the raw object ``node`` (absent or null: defaults)."""
    if node is not None and not isinstance(node, dict):
        raise ConfigError(prefix.rstrip(".") or "(root)", "expected an object")
    node = node or {}
    defaults = view() if defaults is None else defaults
    values: dict[str, Any] = {}
    for entry in entries(view):
        path = prefix + entry.name
        default = getattr(defaults, entry.name)
        raw = node.get(entry.name)
        if entry.view is not None:
            values[entry.name] = parse_section(entry.view, raw, path + ".", default)
        elif entry.spec.parse is not None:
            values[entry.name] = entry.spec.parse(path, raw)
        else:
            values[entry.name] = _parse_leaf(entry, path, raw, default)
    return view(**values)


def _parse_leaf(entry: Entry, path: str, raw: Any, default: Any) -> Any:
    spec = entry.spec
    kind = entry.kind
    if raw is None:
        value = default
    elif kind == "map":
        value = dict(read_value(path, raw, dict))
        for key, item in value.items():
            if not isinstance(item, str):
                raise ConfigError(f"{path}.{key}", "expected a string")
    elif kind == "object":
        value = read_value(path, raw, dict)
    else:
        value = _scalar(kind, path, raw, spec)
    return spec.check(path, value) if spec.check is not None and value is not None else value


_TYPES: dict[str, type | tuple[type, ...]] = {
    "bool": bool, "int": int, "float": (int, float), "text": str, "choice": str}


def _scalar(kind: str, path: str, raw: Any, spec: Spec) -> Any:
    value = read_value(path, raw, _TYPES[kind])
    if kind == "float":
        value = float(value)
        if not math.isfinite(value):  # NaN passes every range check, inf every minimum
            raise ConfigError(path, f"must be a finite number, got {value}")
    if kind in ("int", "float"):
        _check_range(path, value, spec)
    if spec.choices and value not in spec.choices:
        raise ConfigError(path, f"must be one of {', '.join(spec.choices)}; got {value!r}")
    return value


def _check_range(path: str, value: float, spec: Spec) -> None:
    lo, hi = spec.min, spec.max
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bound = (f"between {_num(lo)} and {_num(hi)}" if lo is not None and hi is not None
                 else f"at least {_num(lo)}" if lo is not None else f"at most {_num(hi)}")
        raise ConfigError(path, f"must be {bound}, got {value}")


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- known fields ----------------------------------------------------------------------------

ANY = None  # below this point anything goes (a map, a list parsed by its own code, plugins)


def known_tree(view: type) -> dict[str, Any]:
    """The known members of ``view`` as nested dicts (``ANY`` for free-form)."""
    tree: dict[str, Any] = {}
    for entry in entries(view):
        if entry.view is not None:
            tree[entry.name] = {**known_tree(entry.view),
                                **{name: ANY for name in entry.spec.managed}}
        else:
            tree[entry.name] = ANY
    return tree


def list_item_fields(view: type) -> dict[str, tuple[str, ...]]:
    """Top-level lists whose items have known members (``accounts``)."""
    return {e.name: e.spec.item_fields for e in entries(view) if e.spec.item_fields}
