"""A minimal third-party dialect for ds2proxy.

``POST /hello/v1/ask`` takes ``{"model": "...", "question": "...", "stream": bool}``
and answers ``{"answer": "...", "thinking": "...", "model": "..."}``, or with
``"stream": true`` SSE events ``thinking`` / ``answer`` / ``done``. It uses
only the public plugin API (:mod:`ds2proxy.plugin_api`): parse into a
canonical ChatRequest, let the server run the turn, render the canonical
events.

Settings (``plugins.hello``, checked on every config write and live):
``system`` (a string) is sent as the system prompt. The plugin also
registers the model id ``hello-1`` (served by ``deepseek-chat``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import (
    ChatRequest,
    InvalidRequest,
    Message,
    PluginContext,
    ProxyError,
    ReasoningDelta,
    TextDelta,
    TextPart,
    TurnEvent,
)

MODEL_ID = "hello-1"


def check_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """``system`` must be a string when given."""
    system = settings.get("system", "")
    return {} if isinstance(system, str) else {"system": "must be a string"}


def register(api: PluginContext) -> None:
    api.require_api("1.0")
    api.check_settings(check_settings)
    api.register_model(MODEL_ID, "deepseek-chat")

    async def ask(request: web.Request) -> web.StreamResponse:
        caller = api.authenticate(request)
        body = await api.read_json(request)
        question = body.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InvalidRequest("'question' must be a non-empty string", param="question")
        model = api.resolve_model(body.get("model") or "deepseek-chat")
        system = api.settings.get("system", "")
        messages = [Message("system", [TextPart(system)])] if system else []
        messages.append(Message("user", [TextPart(question)]))
        chat = ChatRequest(model=model, messages=messages, stream=body.get("stream") is True)
        async with api.turn(chat, caller) as turn:
            if not chat.stream:
                result = await turn.collect()
                return web.json_response({"answer": result.text, "thinking": result.reasoning,
                                          "model": model.requested})
            return await api.relay(api.sse(request), turn, HelloRenderer())

    api.route("POST", "/hello/v1/ask", ask, errors=api.errors.openai)


class HelloRenderer:
    """Canonical events as ``thinking`` / ``answer`` / ``done`` SSE events
    (the relay's Renderer protocol: frames, error, end)."""

    def frames(self, event: TurnEvent) -> list[tuple[str, dict[str, Any]]]:
        if isinstance(event, ReasoningDelta):
            return [("thinking", {"text": event.text})]
        if isinstance(event, TextDelta):
            return [("answer", {"text": event.text})]
        return []

    def error(self, error: ProxyError) -> list[tuple[str, dict[str, Any]]]:
        return [("error", {"message": error.message}), ("done", {})]

    def end(self) -> list[tuple[str, dict[str, Any]]]:
        return [("done", {})]
