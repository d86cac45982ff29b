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
import orjson
from aiohttp import web

from ..errors import InvalidRequest, UpstreamError, UpstreamTimeout
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
        response: web.StreamResponse | None = None
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.post(url, json=payload, headers=headers) as answer:
                    response = web.StreamResponse(status=answer.status, headers={
                        "Content-Type": answer.headers.get("Content-Type", "text/plain"),
                        "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
                    await response.prepare(request)
                    async for chunk in answer.content.iter_any():
                        await response.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = relay_failure(exc)
            if response is None:
                raise failure from None
            return await _report_in_stream(request, response, failure)
        await response.write_eof()
        return response


def relay_failure(exc: BaseException) -> UpstreamError:
    """Why the call to this server's own API failed, as a 502 (or 504 when it
    stayed silent), named by kind only: the exception's text would carry the
    address called, and the page needs no more than what went wrong."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("the playground's call to this server's API timed out",
                               retryable=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        what = "could not connect to"
    elif isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        what = "lost its connection to"
    else:
        what = f"failed ({type(exc).__name__}) calling"
    return UpstreamError(f"the playground {what} this server's API", retryable=False)


async def _report_in_stream(request: web.Request, response: web.StreamResponse,
                            failure: UpstreamError) -> web.StreamResponse:
    """The status is already sent: an SSE stream ends with an error event
    every family's reader in the page understands; any other body is cut
    short (a clean end would pass a truncated body off as whole)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return response
    if not response.content_type.startswith("text/event-stream"):
        transport.close()
        return response
    event = {"type": "error", "error": {"type": failure.type, "code": failure.code,
                                        "message": failure.message}}
    await response.write(b"event: error\ndata: " + orjson.dumps(event) + b"\n\n")
    await response.write_eof()
    return response
