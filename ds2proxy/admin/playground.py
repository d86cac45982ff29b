"""The API playground's server half: send one chat message through the
chosen API family of this very server and relay the stream untouched.

The browser never sees an API key: it names a configured key by its id and
this handler makes the call, so the answer arrives exactly as a client of
that family would receive it, and the page renders it as it streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from ..errors import InvalidRequest
from .context import AdminContext, text_field
from .edits import find_key
from .probes import own_base_url


@dataclass(frozen=True, slots=True)
class Family:
    id: str
    label: str
    default_model: str
    route: str


FAMILIES = (
    Family("openai", "OpenAI chat completions", "deepseek-reasoner", "POST /v1/chat/completions"),
    Family("anthropic", "Anthropic messages", "claude-opus-4-6", "POST /anthropic/v1/messages"),
    Family("gemini", "Gemini streamGenerateContent", "gemini-2.5-pro",
           "POST /v1beta/models/{model}:streamGenerateContent?alt=sse"),
)
_BY_ID = {f.id: f for f in FAMILIES}
_THINKING = {"on": "enabled", "off": "disabled"}


def build_request(family: str, model: str, message: str, thinking: str, key: str
                  ) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Path, body and headers of a streamed request in the family's own dialect."""
    switch = _THINKING.get(thinking)
    if family == "openai":
        body: dict[str, Any] = {"model": model, "stream": True,
                                "messages": [{"role": "user", "content": message}]}
        if switch:
            body["thinking"] = {"type": switch}
        return "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"}
    if family == "anthropic":
        body = {"model": model, "max_tokens": 8192, "stream": True,
                "messages": [{"role": "user", "content": message}]}
        if switch == "enabled":
            body["thinking"] = {"type": "enabled", "budget_tokens": 4096}
        elif switch:
            body["thinking"] = {"type": "disabled"}
        return "/anthropic/v1/messages", body, {"x-api-key": key,
                                                "anthropic-version": "2023-06-01"}
    body = {"contents": [{"role": "user", "parts": [{"text": message}]}],
            "generationConfig": {"thinkingConfig": {"includeThoughts": switch != "disabled"}}}
    path = f"/v1beta/models/{quote(model, safe='')}:streamGenerateContent?alt=sse"
    return path, body, {"x-goog-api-key": key}


class Playground:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def _key(self, wanted: str) -> str:
        keys = self.ctx.core.config.key_secrets
        key = find_key(keys, wanted) if wanted else (keys[0] if keys else None)
        if key is None:
            raise InvalidRequest("add an API key first (API keys page)" if not keys
                                 else "that API key is no longer configured", param="key_id")
        return key

    async def send(self, request: web.Request) -> web.StreamResponse:
        body = await self.ctx.body(request)
        family = text_field(body, "family", "openai")
        if family not in _BY_ID:
            raise InvalidRequest(f"unknown family {family!r}", param="family")
        message = text_field(body, "message")
        if not message:
            raise InvalidRequest("write a message first", param="message")
        model = text_field(body, "model", _BY_ID[family].default_model)
        path, payload, headers = build_request(family, model, message,
                                               text_field(body, "thinking"),
                                               self._key(text_field(body, "key_id")))
        return await self._relay(request, own_base_url(request) + path, payload, headers)

    async def _relay(self, request: web.Request, url: str, payload: dict[str, Any],
                     headers: dict[str, str]) -> web.StreamResponse:
        upstream = self.ctx.core.config.upstream
        timeout = aiohttp.ClientTimeout(total=None, connect=upstream.timeout_seconds,
                                        sock_read=upstream.silence_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.post(url, json=payload, headers=headers) as answer:
                response = web.StreamResponse(status=answer.status, headers={
                    "Content-Type": answer.headers.get("Content-Type", "text/plain"),
                    "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
