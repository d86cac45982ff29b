"""Structured output (JSON mode) on an upstream that has no such switch.

The model is instructed in the prompt; its answer is then extracted (code
fences and surrounding prose removed), parsed and checked against the
client's schema. The pipeline re-asks once in the same upstream session when
that fails, and gives a clear error if the second answer fails too.

The schema check covers the JSON Schema keywords structured-output clients
use (type, properties, required, additionalProperties, items, enum, const,
anyOf/oneOf/allOf, nullable, numeric bounds (exclusive ones and multipleOf
too), length and property-count bounds, tuples (prefixItems), uniqueItems,
and local ``$ref`` into ``$defs`` / ``definitions``, which is how Pydantic
and zod describe every nested model), with OpenAPI-style upper-case type
names (Gemini's ``"OBJECT"``, ``"STRING"`` …) accepted. ``pattern`` is not
checked: a client's regular expression run on the event loop could stall it.
For the same reason the walk has a budget of :data:`MAX_STEPS` subschema
visits: branches that each name the same ``$ref`` twice (``anyOf``,
``allOf``) double the work at every level, so a 2 KB schema took minutes;
what lies beyond the budget is left unchecked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from . import enum_output
from .canonical import ResponseFormat

MAX_STEPS = 20_000  # subschema visits per check; past it, the rest passes
_FENCE = re.compile(r"```[\w-]*\s*\n?(.*?)```", re.DOTALL)
# Validates a value against a subschema at a path (the walk's own recursion).
Sub = Callable[[Any, Any, str], list[str]]
_TYPES = {
    "object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
}


class JSONOutputError(ValueError):
    """The model's answer is not JSON matching the requested format."""


def format_instructions(fmt: ResponseFormat) -> str:
    """Extra system text asking for JSON (or an enum value); empty for plain text."""
    if fmt.type == "text":
        return ""
    if fmt.type == "enum":
        return enum_output.instructions(enum_values(fmt))
    lines = [
        "Response format: reply with a single valid JSON value and nothing else — no prose "
        "before or after it, no Markdown code fences, no comments.",
    ]
    if fmt.type == "json_schema" and fmt.schema:
        schema = orjson.dumps(normalise_schema(fmt.schema)).decode()
        lines.append(f"The JSON must conform to this JSON Schema: {schema}")
        lines.append("Include every required property; use only the properties the schema "
                     "defines when it forbids others.")
    else:
        lines.append("The JSON value must be an object.")
    return "\n".join(lines)


def repair_prompt(problem: str, fmt: ResponseFormat) -> str:
    """The follow-up message sent in the same session after a bad answer."""
    if fmt.type == "enum":
        return enum_output.repair(problem, enum_values(fmt))
    return ("Your previous reply could not be used: " + problem + ". Reply again with only "
            "the corrected JSON value, no prose and no code fences.\n\n"
            + format_instructions(fmt))


def enum_values(fmt: ResponseFormat) -> list[str]:
    """The values an enum format allows (its schema's ``enum``)."""
    values = (fmt.schema or {}).get("enum")
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


def settle(written: str, fmt: ResponseFormat) -> str:
    """The answer text that goes out for a structured reply: the enum value
    it names, or its JSON checked and re-serialised compactly; raises
    JSONOutputError when the reply cannot be used."""
    if fmt.type == "enum":
        try:
            return enum_output.pick_value(written, enum_values(fmt))
        except enum_output.EnumOutputError as exc:
            raise JSONOutputError(str(exc)) from None
    value = extract_json(written)
    check(value, fmt)
    return orjson.dumps(value).decode()


def normalise_schema(schema: Any) -> Any:
    """Lower-case OpenAPI type names, recursively; everything else unchanged."""
    if isinstance(schema, dict):
        out = {k: normalise_schema(v) for k, v in schema.items()}
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = kind.lower()
        elif isinstance(kind, list):
            out["type"] = [k.lower() if isinstance(k, str) else k for k in kind]
        return out
    if isinstance(schema, list):
        return [normalise_schema(v) for v in schema]
    return schema


def extract_json(text: str) -> Any:
    """The first JSON value in ``text``: bare, fenced, or embedded in prose."""
    stripped = text.strip()
    candidates = [stripped]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    for candidate in candidates:
        try:
            return orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
    # Characters the bracket scans may read in all: each scan runs from its
    # bracket to the one closing it, so a reply of unclosed brackets ("{{{…")
    # cost the square of its length (6 s for 10,000) on the event loop.
    budget = [2 * len(text) + 100_000]
    for start, char in enumerate(text):
        if char in "{[":
            end = _balanced_end(text, start, budget)
            if end is not None:
                try:
                    return orjson.loads(text[start:end])
                except orjson.JSONDecodeError:
                    continue
            if budget[0] <= 0:
                break
    raise JSONOutputError("the reply contains no parseable JSON value")


def _balanced_end(text: str, start: int, budget: list[int]) -> int | None:
    """Index after the bracket that closes ``text[start]`` (strings
    respected), read within ``budget`` characters (what it read is spent)."""
    stop = min(len(text), start + max(budget[0], 0))
    end = _closing(text, start, stop)
    budget[0] -= (stop if end is None else end) - start
    return end


def _closing(text: str, start: int, stop: int) -> int | None:
    depth = 0
    in_string = escaped = False
    for i in range(start, stop):
        c = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def check(value: Any, fmt: ResponseFormat) -> None:
    """Raise JSONOutputError when ``value`` does not satisfy the format."""
    if fmt.type == "json_object" and not isinstance(value, dict):
        raise JSONOutputError("the reply must be a JSON object")
    if fmt.type == "json_schema" and fmt.schema:
        problems = validate(value, normalise_schema(fmt.schema))
        if problems:
            raise JSONOutputError("the JSON does not match the schema: " + "; ".join(problems[:5]))


def validate(value: Any, schema: Any, path: str = "$", root: Any = None) -> list[str]:
    """Schema problems of ``value`` (empty when it conforms). The schema is
    the client's and unchecked: a keyword of the wrong type is ignored, as
    it cannot say anything about the answer. ``root`` is the whole schema
    that ``$ref`` pointers resolve in (``schema`` itself at the top)."""
    return _validate(value, schema, path, schema if root is None else root, (),
                     [MAX_STEPS])


def _validate(value: Any, schema: Any, path: str, root: Any, refs: tuple[str, ...],
              budget: list[int]) -> list[str]:
    """``refs``: the pointers followed at this same ``path``; one seen again
    (``{"$ref": "#"}`` at the root) says nothing more and ends the walk.
    ``budget``: the visits left, shared by the whole walk."""
    if not isinstance(schema, dict) or not schema or budget[0] <= 0:
        return []
    budget[0] -= 1
    if value is None and schema.get("nullable") is True:
        return []
    problems = _check_type(value, schema, path)
    if problems:
        return problems
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref not in refs:
        problems += _validate(value, resolve_ref(root, ref), path, root, (*refs, ref), budget)

    def sub(item: Any, item_schema: Any, item_path: str) -> list[str]:
        return _validate(item, item_schema, item_path, root,
                         refs if item_path == path else (), budget)

    for check_fn in (_check_enum, _check_combinators, _check_object, _check_array, _check_bounds):
        problems += check_fn(value, schema, path, sub)
    return problems


def resolve_ref(root: Any, ref: str) -> Any:
    """The subschema a local JSON pointer (``#``, ``#/$defs/Step``) names; None
    for a remote or dangling one (which then constrains nothing)."""
    if not ref.startswith("#"):
        return None
    node = root
    for token in ref[1:].split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isascii() and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def _list(schema: dict, key: str) -> list[Any]:
    found = schema.get(key)
    return found if isinstance(found, list) else []


def _dict(schema: dict, key: str) -> dict[str, Any]:
    found = schema.get(key)
    return found if isinstance(found, dict) else {}


def _bound(schema: dict, key: str) -> int | float | None:
    found = schema.get(key)
    return found if isinstance(found, int | float) and not isinstance(found, bool) else None


def _check_type(value: Any, schema: dict, path: str) -> list[str]:
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list):
        return []
    kinds = [k for k in kinds if isinstance(k, str)]
    if not kinds or any(_is_type(value, k) for k in kinds):
        return []
    return [f"{path} should be {' or '.join(kinds)}"]


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _TYPES.get(kind)
    return expected is not None and isinstance(value, expected) and not (
        kind != "boolean" and isinstance(value, bool))


def _check_enum(value: Any, schema: dict, path: str, sub: Sub) -> list[str]:
    options = schema.get("enum")
    if isinstance(options, list) and value not in options:
        return [f"{path} should be one of {options}"]
    if "const" in schema and value != schema["const"]:
        return [f"{path} should be {schema['const']!r}"]
    return []


def _check_combinators(value: Any, schema: dict, path: str, sub: Sub) -> list[str]:
    problems: list[str] = []
    for member in _list(schema, "allOf"):
        problems += sub(value, member, path)
    for key in ("anyOf", "oneOf"):
        options = _list(schema, key)
        if options and all(sub(value, option, path) for option in options):
            problems.append(f"{path} matches none of the {key} alternatives")
    return problems


def _check_object(value: Any, schema: dict, path: str, sub: Sub) -> list[str]:
    if not isinstance(value, dict):
        return []
    props = _dict(schema, "properties")
    extra = schema.get("additionalProperties")
    problems = [f"{path}.{name} is required" for name in _list(schema, "required")
                if isinstance(name, str) and name not in value]
    for name, item in value.items():
        if name in props:
            problems += sub(item, props[name], f"{path}.{name}")
        elif extra is False:
            problems.append(f"{path}.{name} is not allowed")
        elif isinstance(extra, dict):
            problems += sub(item, extra, f"{path}.{name}")
    return problems


def _check_array(value: Any, schema: dict, path: str, sub: Sub) -> list[str]:
    if not isinstance(value, list):
        return []
    problems: list[str] = []
    prefix = _list(schema, "prefixItems")  # a tuple: one schema per position
    for i, (item, item_schema) in enumerate(zip(value, prefix)):
        problems += sub(item, item_schema, f"{path}[{i}]")
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value[len(prefix):], len(prefix)):
            problems += sub(item, items, f"{path}[{i}]")
    elif items is False and len(value) > len(prefix):
        problems.append(f"{path} allows at most {len(prefix)} items")
    if schema.get("uniqueItems") is True and _has_duplicates(value):
        problems.append(f"{path} should hold unique items")
    problems += _size_problems(len(value), schema, path, "Items",
                               "needs at least {} items", "allows at most {} items")
    return problems


def _check_bounds(value: Any, schema: dict, path: str, sub: Sub) -> list[str]:
    problems: list[str] = []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
        if low is not None and value < low:
            problems.append(f"{path} should be >= {low}")
        if high is not None and value > high:
            problems.append(f"{path} should be <= {high}")
        low, high = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
        if low is not None and value <= low:
            problems.append(f"{path} should be > {low}")
        if high is not None and value >= high:
            problems.append(f"{path} should be < {high}")
        step = _bound(schema, "multipleOf")
        if step is not None and step > 0 and not _multiple(value, step):
            problems.append(f"{path} should be a multiple of {step}")
    if isinstance(value, dict):
        problems += _size_problems(len(value), schema, path, "Properties",
                                   "needs at least {} properties", "allows at most {} properties")
    if isinstance(value, str):
        problems += _size_problems(len(value), schema, path, "Length",
                                   "should have at least {} characters",
                                   "should have at most {} characters")
    return problems


def _size_problems(size: int, schema: dict, path: str, suffix: str, fewer: str,
                   more: str) -> list[str]:
    """``min<suffix>`` / ``max<suffix>`` (Items, Properties, Length) against
    ``size``; ``fewer`` and ``more`` word a breach, ``{}`` the bound."""
    low, high = _bound(schema, "min" + suffix), _bound(schema, "max" + suffix)
    problems = []
    if low is not None and size < low:
        problems.append(f"{path} {fewer.format(low)}")
    if high is not None and size > high:
        problems.append(f"{path} {more.format(high)}")
    return problems


def _multiple(value: int | float, step: int | float) -> bool:
    """Within float rounding; a quotient too large to tell passes."""
    quotient = value / step
    return not math.isfinite(quotient) or abs(quotient - round(quotient)) < 1e-9


def _has_duplicates(values: list[Any]) -> bool:
    """Equal JSON values twice (``1`` and ``true`` differ, as in JSON Schema)."""
    seen = {orjson.dumps(v, option=orjson.OPT_SORT_KEYS) if not isinstance(v, bool | int | float)
            else (type(v) is bool, v) for v in values}
    return len(seen) < len(values)
