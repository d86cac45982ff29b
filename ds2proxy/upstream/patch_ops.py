"""The DeepSeek patch language (spec §9): resolve patches, apply them to a tree.

A stream is a sequence of ``{"p": path, "o": op, "v": value}`` patches on a
JSON tree; ``p`` and ``o`` are often omitted and then inherited from a
*sticky cursor* (``o`` is inherited even when ``p`` is given). ``BATCH`` runs
its items under a fresh sub-cursor, relative to the batch path.

:func:`expand` resolves one patch into elementary ``(path, op, value)``
steps (SET or APPEND only), applying the tolerance rules T1–T3 of §10.8;
:func:`apply` performs one step. Both raise :class:`PatchError` for what
cannot be applied, so the caller can log and skip it without aborting.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SET = "SET"
APPEND = "APPEND"
BATCH = "BATCH"

LEGACY_ANSWER = "response/content"
LEGACY_THINKING = "response/thinking_content"
# Where a path-less token usually goes: the content of the newest fragment.
TAIL_CONTENT = "response/fragments/-1/content"
# At most 18 digits: any real index, and always within what int() converts
# (Python refuses strings of over 4300 digits with a bare ValueError).
_INDEX = re.compile(r"-?[0-9]{1,18}")


class PatchError(ValueError):
    """A patch that cannot be resolved or applied (logged and skipped)."""


@dataclass(slots=True)
class Cursor:
    """The sticky (path, op) of §9; ``op`` None means nothing was inherited yet."""

    path: str = ""
    op: str | None = None

    def advance(self, patch: dict) -> tuple[str, str | None]:
        """Resolve ``patch``'s path and op against the cursor, then move it."""
        p, o = patch.get("p"), patch.get("o")
        self.path = p if isinstance(p, str) else self.path
        self.op = o if isinstance(o, str) else self.op
        return self.path, self.op


def is_text_path(path: str) -> bool:
    """True for fields whose string value is text (the T3 rule's targets)."""
    return path in (LEGACY_ANSWER, LEGACY_THINKING) or path == "content" or path.endswith(
        "/content")


def text_of(value: Any) -> str | None:
    """The text of a string, or of a legacy ``{"text": …}`` / ``{"content": …}`` object."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("text", "content"):
            if isinstance(value.get(key), str):
                return value[key]
    return None


def expand(patch: dict, cursor: Cursor) -> Iterator[tuple[str, str, Any]]:
    """Resolve one top-level patch into elementary SET/APPEND steps."""
    if "v" not in patch:
        raise PatchError("patch without a value")
    path, op = cursor.advance(patch)
    yield from _resolve(path, op, patch["v"])


def _resolve(path: str, op: str | None, value: Any) -> Iterator[tuple[str, str, Any]]:
    if is_text_path(path) and isinstance(value, dict):
        value = text_of(value)
        if value is None:
            raise PatchError(f"object without text on {path}")
    if op in (None, SET) and _is_batch_list(value):
        op = BATCH  # T1
    elif op is None:
        op = APPEND if isinstance(value, str) and is_text_path(path) else SET  # T3
    if op == BATCH:
        yield from _batch(path, value)
    elif op in (SET, APPEND):
        yield path, op, value
    else:
        raise PatchError(f"unknown op {op!r}")


def _batch(path: str, items: Any) -> Iterator[tuple[str, str, Any]]:
    if not isinstance(items, list):
        raise PatchError(f"BATCH on {path!r} without a list")
    sub = Cursor()
    for item in items:
        if not isinstance(item, dict) or "v" not in item:
            raise PatchError(f"BATCH item without a value on {path!r}")
        sub_path, sub_op = sub.advance(item)
        yield from _resolve(_join(path, sub_path), sub_op, item["v"])


def _is_batch_list(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(i, dict) and "p" in i for i in value))


def _join(base: str, sub: str) -> str:
    if not base:
        return sub
    if not sub:
        return base
    if sub == base or sub.startswith(base + "/"):
        return sub  # T2: already absolute
    return f"{base}/{sub}"


def apply(root: Any, path: str, op: str, value: Any) -> Any:
    """Apply one elementary step and return the (possibly new) root."""
    if not path:
        return value if op == SET else _combine(root, value)
    keys = path.split("/")
    node = root
    for i, key in enumerate(keys[:-1]):
        node = _child(node, key, create_for=keys[i + 1])
    _assign(node, keys[-1], op, value)
    return root


def _child(node: Any, key: str, *, create_for: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, key)]
    if not isinstance(node, dict):
        raise PatchError(f"cannot walk into {type(node).__name__} at {key!r}")
    if node.get(key) is None:
        if _looks_like_index(create_for):
            raise PatchError(f"missing list at {key!r}")
        node[key] = {}
    return node[key]


def _assign(node: Any, key: str, op: str, value: Any) -> None:
    if isinstance(node, list):
        idx = _index(node, key)
        node[idx] = value if op == SET else _combine(node[idx], value)
    elif isinstance(node, dict):
        current = node.get(key)
        node[key] = value if op == SET or current is None else _combine(current, value)
    else:
        raise PatchError(f"cannot set {key!r} on {type(node).__name__}")


def _combine(current: Any, value: Any) -> Any:
    """APPEND: string concatenation or list extension."""
    if isinstance(current, str) and isinstance(value, str):
        return current + value
    if isinstance(current, list):
        current.extend(value if isinstance(value, list) else [value])
        return current
    raise PatchError(f"cannot APPEND {type(value).__name__} to {type(current).__name__}")


def _index(node: list, key: str) -> int:
    if not _looks_like_index(key):
        raise PatchError(f"non-integer index {key!r}")
    idx = int(key)
    if not -len(node) <= idx < len(node):
        raise PatchError(f"index {idx} out of range ({len(node)})")
    return idx % len(node)


def _looks_like_index(key: str) -> bool:
    """ASCII digits with an optional minus: ``str.isdigit`` also accepts
    "²" or "٣", which ``int`` then refuses with a bare ValueError; too many
    digits are no index either."""
    return _INDEX.fullmatch(key) is not None
