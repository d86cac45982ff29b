"""Deep merge of JSON documents: a config with overrides laid over it."""

from __future__ import annotations

import copy
from typing import Any


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A new document: ``overrides`` over ``base``. Objects merge key by key;
    anything else in ``overrides`` replaces (as a copy, so later edits of
    either input do not reach the result's new parts)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def copy_tree(value: Any) -> Any:
    """A deep copy of a JSON-shaped value. Objects and arrays are rebuilt and
    strings, numbers, booleans and null shared (they cannot change), which is
    several times faster than :func:`copy.deepcopy` and its memo of every
    node (a config of thousands of accounts is copied on reads and writes);
    anything else still goes through :func:`copy.deepcopy`."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) is str else copy_tree(v) for k, v in value.items()}
    if kind is list:
        return [copy_tree(v) for v in value]
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    return copy.deepcopy(value)
