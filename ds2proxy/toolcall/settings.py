"""The ``toolcall`` settings: checked on every update, hot-reloadable."""

from __future__ import annotations

from typing import Any

CHOICES = {
    "mode": ("feature_match", "off"),
    "early_emit_confidence": ("high", "low", "off"),
}
DEFAULTS = {"mode": "feature_match", "early_emit_confidence": "high"}


def validate_toolcall_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``toolcall`` section with defaults filled in; ValueError naming
    the field for an unknown key or a value out of range."""
    if not isinstance(settings, dict):
        raise ValueError("toolcall: expected an object")
    result = dict(DEFAULTS)
    for key, value in settings.items():
        allowed = CHOICES.get(key)
        if allowed is None:
            raise ValueError(f"toolcall.{key}: unknown setting")
        if value not in allowed:
            raise ValueError(f"toolcall.{key}: must be one of {', '.join(allowed)}, not {value!r}")
        result[key] = value
    return result
