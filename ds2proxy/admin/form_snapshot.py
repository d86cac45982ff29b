"""What an edit form showed, so that saving it applies only the fields
edited on the page.

A form is a copy of the config as it was when the page loaded; saving every
field would undo what another admin changed since. The page therefore
carries what it showed (a hidden field holding JSON), and a save keeps only
the values that differ from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


def snapshot(values: Mapping[str, Any]) -> str:
    """The hidden field's text for a form showing ``values``."""
    return orjson.dumps(values).decode()


def edited(values: Mapping[str, Any], shown_text: str) -> dict[str, Any]:
    """The ``values`` that differ from what the page showed; without a
    readable snapshot every value counts as edited."""
    try:
        shown = orjson.loads(shown_text) if shown_text else {}
    except orjson.JSONDecodeError:
        shown = {}
    if not isinstance(shown, dict):
        shown = {}
    return {k: v for k, v in values.items() if k not in shown or _plain(v) != shown[k]}


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples as lists), to compare with the snapshot."""
    return orjson.loads(orjson.dumps(value))
