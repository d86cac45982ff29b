"""Typed reads of request fields, shared by every API family.

Each reader returns the validated value (the only thing that may go
upstream) or raises :class:`InvalidRequest` naming the field and what it
must be. Messages never quote the client's value: it may be huge, nested or
binary. ``None`` always reads as "absent", as the official APIs treat null.

A family describes its sampling fields as a table of :class:`Field` and
reads them all with :func:`read_fields`, so the ranges live in one place per
family and the checks in one place for all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidRequest
from ..stops import parse_stops

INT32_MAX = 2**31 - 1
_INTEGRAL = re.compile(r"[+-]?\d+")
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class Bounds:
    """A closed (or half-open) numeric range; ``None`` leaves a side open."""

    low: float | None = None
    high: float | None = None
    high_open: bool = False
    low_open: bool = False

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"in {left}{_text(self.low)}, {_text(self.high)}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_text(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_text(self.high)}"
        return "finite"


def _text(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(value: Any, field: str, bounds: Bounds = Bounds()) -> float | None:
    """A finite JSON number within ``bounds``, as a float."""
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value):
        raise InvalidRequest(f"'{field}' must be a number", param=field)
    if not bounds.holds(value):
        raise InvalidRequest(f"'{field}' must be a number {bounds.describe()}", param=field)
    return float(value)


def integer(value: Any, field: str, bounds: Bounds = Bounds(*INT64), *,
            integral_float: bool = False) -> int | None:
    """A JSON integer within ``bounds``; ``integral_float`` also takes ``64.0``."""
    if value is None:
        return None
    if integral_float and isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{field}' must be an integer", param=field)
    if not bounds.holds(value):
        raise InvalidRequest(f"'{field}' must be an integer {bounds.describe()}", param=field)
    return value


def boolean(value: Any, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise InvalidRequest(f"'{field}' must be true or false", param=field)


def string(value: Any, field: str, *, max_length: int | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{field}' must be a string", param=field)
    if max_length is not None and len(value) > max_length:
        raise InvalidRequest(f"'{field}' must be at most {max_length} characters", param=field)
    return value


def choice(value: Any, field: str, options: Sequence[str]) -> str | None:
    """One of a fixed set of words."""
    if value is None:
        return None
    if not isinstance(value, str) or value not in options:
        raise InvalidRequest(f"'{field}' must be one of: {', '.join(options)}", param=field)
    return value


def objects(value: Any, field: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each item of a non-empty list of objects, with its index; a 400
    naming the field, or the first item that is not an object."""
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"'{field}' must be a non-empty list", param=field)
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"{field}[{index}] must be an object", param=field)
        yield index, item


def mapping(value: Any, field: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise InvalidRequest(f"'{field}' must be an object", param=field)


def string_map(value: Any, field: str, *, max_pairs: int, max_key: int, max_value: int
               ) -> dict[str, str] | None:
    """OpenAI ``metadata``: a small object of string values."""
    found = mapping(value, field)
    if found is None:
        return None
    if len(found) > max_pairs:
        raise InvalidRequest(f"'{field}' may hold at most {max_pairs} pairs", param=field)
    for key, item in found.items():
        if len(key) > max_key or not isinstance(item, str) or len(item) > max_value:
            raise InvalidRequest(f"'{field}' must map keys of at most {max_key} characters to "
                                 f"strings of at most {max_value}", param=field)
    return found


Kind = Literal["number", "integer", "boolean", "string", "stop", "object"]


@dataclass(frozen=True, slots=True)
class Field:
    """One documented body field: its type, range, and the canonical
    sampling name it travels under (``None``: checked, not sent upstream)."""

    key: str
    kind: Kind
    bounds: Bounds = Bounds()
    upstream: str | None = None
    max_items: int | None = None
    allow_string: bool = True


def protobuf_number(value: Any) -> Any:
    """Protocol Buffers' JSON takes numbers as numbers or as decimal strings
    (``"256"``, ``"0.5"``), as Google's APIs parse them; other values are
    returned unchanged for the type check to refuse."""
    if not isinstance(value, str) or "_" in value:
        return value
    if _INTEGRAL.fullmatch(value.strip()):
        return int(value)
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def read_field(value: Any, spec: Field, name: str, *, protobuf: bool = False) -> Any:
    """The validated value of one field (``name`` is how errors call it);
    ``protobuf`` reads numbers as Protocol Buffers' JSON does."""
    if protobuf and spec.kind in ("number", "integer"):
        value = protobuf_number(value)
    if spec.kind == "number":
        return number(value, name, spec.bounds)
    if spec.kind == "integer":
        bounds = spec.bounds if spec.bounds != Bounds() else Bounds(*INT64)
        return integer(value, name, bounds, integral_float=protobuf)
    if spec.kind == "boolean":
        return boolean(value, name)
    if spec.kind == "string":
        return string(value, name)
    if spec.kind == "stop":
        return parse_stops(value, param=name, max_count=spec.max_items,
                           allow_string=spec.allow_string) or None
    return mapping(value, name)


def read_fields(body: dict[str, Any], fields: Sequence[Field], *, prefix: str = "",
                get: Any = None, protobuf: bool = False) -> dict[str, Any]:
    """Validate every present field of ``body``; the upstream-bound ones come
    back under their canonical names. ``get(body, key)`` overrides the lookup
    (Gemini reads camelCase and snake_case alike)."""
    sampling: dict[str, Any] = {}
    for spec in fields:
        raw = get(body, spec.key) if get is not None else body.get(spec.key)
        value = read_field(raw, spec, prefix + spec.key, protobuf=protobuf)
        if value is not None and spec.upstream is not None:
            sampling[spec.upstream] = value
    return sampling


def one_choice(value: Any, field: str) -> None:
    """``n`` / ``candidateCount``: the web chat answers once per turn, so more
    than one choice cannot be served honestly."""
    count = integer(value, field, Bounds(1, 128))
    if count is not None and count > 1:
        raise InvalidRequest(f"'{field}' must be 1: this server returns one choice per request",
                             param=field, code="unsupported_value")
