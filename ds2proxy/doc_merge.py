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
