"""The dashboard's Providers page and its forms: list, add, edit, delete and
test upstream providers, through the same operations as the JSON API
(:class:`.provider_ops.ProviderOps`), post / redirect / get.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .context import AdminContext
from .credentials import Claims
from .dashboard import Dashboard, Form, FormHandler
from .form_snapshot import edited, snapshot
from .provider_edits import REASONING
from ..providers.settings import LIMIT_FIELD_MODES

PROVIDERS_URL = "/admin/ui/providers"
NUMBERS = ("timeout_seconds", "max_inflight", "embeddings_batch_size")


def _text(form: Form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def models_of(text: str) -> list[str]:
    """Model names or globs, separated by commas, spaces or lines."""
    return [m for m in text.replace(",", " ").split() if m]


def headers_of(text: str) -> dict[str, str]:
    """``Name: value`` lines (a value shown masked keeps the stored one)."""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if line.strip():
            headers[name.strip()] = value.strip() if sep else ""
    return headers


def provider_from(form: Form, *, editing: bool) -> dict[str, Any]:
    """A provider as the JSON API takes it; empty optional fields are left out
    (when editing: an empty key keeps the stored one, an empty number its default)."""
    item: dict[str, Any] = {"name": _text(form, "name"), "base_url": _text(form, "base_url"),
                            "models": models_of(_text(form, "models")),
                            "headers": headers_of(str(form.get("headers") or "")),
                            "reasoning": _text(form, "reasoning") or "field",
                            "max_tokens_field": _text(form, "max_tokens_field") or "auto",
                            "tools": "tools" in form}
    if _text(form, "api_key") or not editing:
        item["api_key"] = _text(form, "api_key")
    for name in NUMBERS:
        item[name] = _text(form, name) or None
    return item


SHOWN_FIELD = "shown"


def shown_item(view: dict[str, Any]) -> str:
    """What an edit form shows of a provider (as :func:`provider_from` reads
    it back), for the form's hidden ``shown`` field."""
    form = {"name": view.get("name") or "", "base_url": view.get("base_url") or "",
            "models": ", ".join(view.get("models") or []),
            "headers": "".join(f"{k}: {v}\n" for k, v in (view.get("headers") or {}).items()),
            "reasoning": view.get("reasoning") or "field",
            "max_tokens_field": view.get("max_tokens_field") or "auto",
            **{n: str(view[n]) for n in NUMBERS if view.get(n)}}
    if view.get("tools") is None or view.get("tools"):
        form["tools"] = "on"
    return snapshot(provider_from(form, editing=True))


class ProviderPages:
    def __init__(self, ctx: AdminContext, dash: Dashboard) -> None:
        self.ctx = ctx
        self.dash = dash
        self.providers = ctx.ops.providers

    def forms(self) -> list[tuple[str, str, FormHandler]]:
        """(path under /admin/ui/, page to return to on error, handler)."""
        return [("providers/add", PROVIDERS_URL, self.add),
                ("providers/update", PROVIDERS_URL, self.update),
                ("providers/delete", PROVIDERS_URL, self.delete),
                ("providers/test", PROVIDERS_URL, self.test)]

    async def page(self, request: web.Request) -> web.StreamResponse:
        claims = self.dash.session(request)
        cfg = self.ctx.core.config
        return self.dash.render(request, "providers.html", claims=claims, active="providers",
                                listing=self.providers.listing(), reasoning=REASONING,
                                limit_fields=LIMIT_FIELD_MODES,
                                shown_item=shown_item,
                                embeddings=(cfg.embeddings.provider, cfg.embeddings.model))

    def _back(self, request: web.Request, text: str, kind: str = "success") -> web.Response:
        return self.dash.back(request, PROVIDERS_URL, kind, text)

    async def add(self, request: web.Request, claims: Claims, form: Form
                  ) -> web.StreamResponse:
        item = {k: v for k, v in provider_from(form, editing=False).items() if v is not None}
        view, total = await self.providers.add(item)
        return self._back(request, f"Provider {view['name']} added ({total} configured).")

    async def update(self, request: web.Request, claims: Claims, form: Form
                     ) -> web.StreamResponse:
        changes = edited(provider_from(form, editing=True), str(form.get(SHOWN_FIELD) or ""))
        view = await self.providers.update(_text(form, "original"), changes)
        return self._back(request, f"Provider {view['name']} saved.")

    async def delete(self, request: web.Request, claims: Claims, form: Form
                     ) -> web.StreamResponse:
        name = _text(form, "name")
        await self.providers.remove(name)
        return self._back(request, f"Provider {name} removed.")

    async def test(self, request: web.Request, claims: Claims, form: Form
                   ) -> web.StreamResponse:
        result = await self.providers.test(_text(form, "name"), model=_text(form, "model"))
        verdict = "works" if result["success"] else "failed"
        return self._back(request, f"{result['provider']} {verdict} in "
                          f"{result['response_time']} ms: {result['message']}",
                          "success" if result["success"] else "error")
