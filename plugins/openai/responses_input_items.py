"""``GET /v1/responses/{id}/input_items``: the items a stored response was
generated from (its ``previous_response_id`` history included), as the
official API lists them: a cursor page, newest first unless ``order=asc``.

Clients send input in shorthand (a string, ``{"role", "content": "…"}``
without an id); the list shows each as the item the API would have stored,
a ``message`` whose content is a list of typed parts, with an id that is the
client's own or one derived from the response id and the item's position
(stable, so ``after`` pages through the same list every time).
"""

from __future__ import annotations

import re
from typing import Any

from ds2proxy.plugin_api import InvalidRequest
from ds2proxy.dialects.validate import Bounds, choice, integer

# An id this server made for an item: ``<prefix>_<response hex>`` then the
# item's place (``_<n>`` in the output, four digits in the listed input).
_MADE_ID = re.compile(r"[a-z]+_([0-9a-f]{32})(?:_\d+|\d{4})")
DEFAULT_LIMIT = 20


def output_item_id(prefix: str, response_id: str, index: int) -> str:
    """An output item's id names its response and its place there, so an
    ``item_reference`` to it (the AI SDK sends one for each past answer when
    it stores them) finds the stored response that holds it."""
    return f"{prefix}_{response_id.removeprefix('resp_')}_{index}"


def response_holding(item_id: str) -> str | None:
    """The id of the response whose output or listed input holds ``item_id``
    when this server made the id, else None."""
    made = _MADE_ID.fullmatch(item_id)
    return f"resp_{made.group(1)}" if made else None


def items_by_id(response_id: str, input_items: list[Any], output: list[Any]
                ) -> dict[str, Any]:
    """A stored response's items (its listed input, then its output) by id."""
    found = {item["id"]: item for item in listed_items(response_id, input_items)}
    found.update((item["id"], item) for item in output
                 if isinstance(item, dict) and isinstance(item.get("id"), str))
    return found

LIMIT = Bounds(1, 100)
ORDERS = ("asc", "desc")


def listed_items(response_id: str, items: list[Any]) -> list[dict[str, Any]]:
    """Every stored input item in its listed form, oldest first. Ids are the
    cursor, so each is made unique: a client resending an item beside
    ``previous_response_id`` repeats its id, and paging ``after`` that id
    went back to its first place, for ever (the SDK's auto-paging never
    ended); a repeat is listed under its id suffixed with its position."""
    stem = response_id.removeprefix("resp_")
    listed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        entry = _listed(item, f"{stem}{index:04d}")
        if entry["id"] in seen:
            entry = {**entry, "id": f"{entry['id']}_{index:04d}"}
        seen.add(entry["id"])
        listed.append(entry)
    return listed


def _listed(item: Any, suffix: str) -> dict[str, Any]:
    if isinstance(item, str):
        item = {"role": "user", "content": item}
    if not isinstance(item, dict):  # refused when the response was created
        return {"type": "unknown", "id": f"item_{suffix}"}
    role = item.get("role")
    if isinstance(role, str) and item.get("type") in (None, "message"):
        content = item.get("content", item.get("text"))
        return {**item, "type": "message", "id": _id(item, f"msg_{suffix}"),
                "role": role, "status": item.get("status") or "completed",
                "content": _parts(content, "output_text" if role == "assistant"
                                  else "input_text")}
    return {**item, "id": _id(item, f"item_{suffix}")}


def _id(item: dict, made: str) -> str:
    given = item.get("id")
    return given if isinstance(given, str) and given else made


def _parts(content: Any, text_type: str) -> list[Any]:
    """Message content as typed parts: a string becomes one text part."""
    if content is None:
        return []
    if isinstance(content, str):
        content = [content]
    elif isinstance(content, dict):
        content = [content]
    parts = [{"type": text_type, "text": part} if isinstance(part, str) else part
             for part in content]
    return [{**part, "annotations": part.get("annotations") or []}
            if isinstance(part, dict) and part.get("type") == "output_text" else part
            for part in parts]


def page(items: list[dict[str, Any]], query: Any) -> dict[str, Any]:
    """One cursor page of ``items`` (oldest first) for ``limit``, ``order``
    and ``after``; a bad ``limit`` or ``order`` is a 400 naming it."""
    limit = integer(_number(query.get("limit"), "limit"), "limit", LIMIT) or DEFAULT_LIMIT
    order = choice(query.get("order"), "order", ORDERS) or "desc"
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    ids = [item["id"] for item in ordered]
    start = ids.index(after) + 1 if after in ids else 0
    rest = ordered[start:]
    data = rest[:limit]
    return {"object": "list", "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(rest) > limit}


def _number(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"'{field}' must be an integer", param=field) from None
