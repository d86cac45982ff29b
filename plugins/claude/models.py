"""``GET /anthropic/v1/models`` and ``GET /anthropic/v1/models/{model_id}``.

The list is Anthropic's catalogue as clients know it (newest first), so a
client that picks a model from it gets a name the Claude routes resolve.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import InvalidRequest, NotFound, PluginAPI
from ds2proxy.dialects import json_response

# (id, display name, release date) — newest first, as Anthropic lists them.
CLAUDE_MODELS: tuple[tuple[str, str, str], ...] = (
    ("claude-opus-5-5", "Claude Opus 5.5", "2026-06-24"),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5", "2026-06-24"),
    ("claude-haiku-5-5", "Claude Haiku 5.5", "2026-06-24"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17"),
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05"),
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-01"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05"),
    ("claude-opus-4-20250514", "Claude Opus 4", "2025-05-14"),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-14"),
    ("claude-3-7-sonnet-20250219", "Claude Sonnet 3.7", "2025-02-19"),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22"),
    ("claude-3-5-sonnet-20241022", "Claude Sonnet 3.5 (New)", "2024-10-22"),
    ("claude-3-5-sonnet-20240620", "Claude Sonnet 3.5 (Old)", "2024-06-20"),
    ("claude-3-haiku-20240307", "Claude Haiku 3", "2024-03-07"),
    ("claude-3-opus-20240229", "Claude Opus 3", "2024-02-29"),
    ("claude-3-sonnet-20240229", "Claude Sonnet 3", "2024-02-29"),
)
_BY_ID = {model_id: (name, date) for model_id, name, date in CLAUDE_MODELS}
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def model_object(model_id: str, provider: str | None = None) -> dict[str, Any]:
    """A model; one a provider answers names that provider in its display name."""
    name, date = _BY_ID.get(model_id, (model_id, CLAUDE_MODELS[-1][2]))
    if provider:
        name = f"{model_id} (provider {provider})"
    return {"type": "model", "id": model_id, "display_name": name,
            "created_at": f"{date}T00:00:00Z"}


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return int(value)


def _page(ids: list[str], after: str | None, before: str | None, limit: int) -> tuple[
        list[str], bool]:
    """Anthropic's cursor paging: ``after_id`` / ``before_id`` exclusive."""
    if before in ids:
        head = ids[:ids.index(before)]
        return head[-limit:], len(head) > limit
    start = ids.index(after) + 1 if after in ids else 0
    rest = ids[start:]
    return rest[:limit], len(rest) > limit


class ModelRoutes:
    def __init__(self, api: PluginAPI) -> None:
        self.api = api

    async def list(self, request: web.Request) -> web.Response:
        query = request.query
        providers = dict(self.api.models.provider_models())
        ids, more = _page([m[0] for m in CLAUDE_MODELS] + list(providers),
                          query.get("after_id"), query.get("before_id"),
                          _limit(query.get("limit")))
        data = [model_object(i, providers.get(i)) for i in ids]
        return json_response({"data": data, "has_more": more,
                              "first_id": ids[0] if ids else None,
                              "last_id": ids[-1] if ids else None})

    async def get(self, request: web.Request) -> web.Response:
        name = request.match_info["model_id"]
        try:
            self.api.resolve_model(name, family="claude")
        except InvalidRequest:
            raise NotFound(f"model: {name}") from None
        return json_response(model_object(name, self.api.models.owner(name)))
