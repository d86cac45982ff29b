"""A minimal third-party dialect for ds2proxy.

``POST /hello/v1/ask`` takes ``{"model": "...", "question": "...", "stream": bool}``
and answers ``{"answer": "...", "thinking": "...", "model": "..."}``, or with
``"stream": true`` SSE events ``thinking`` / ``answer`` / ``done``. It uses
only the public plugin API: parse into a canonical ChatRequest, let the core
run the turn, render the canonical events.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.canonical import (
    ChatRequest,
    Message,
    ReasoningDelta,
    TextDelta,
    TextPart,
    TurnEvent,
)
from ds2proxy.errors import InvalidRequest, ProxyError
from ds2proxy.plugin_api import PluginAPI


def register(api: PluginAPI) -> None:
    core = api.core
    greeting = str(api.settings.get("system", ""))

    async def ask(request: web.Request) -> web.StreamResponse:
        caller = core.authenticate(request)
        body = await core.read_json(request)
        question = body.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InvalidRequest("'question' must be a non-empty string", param="question")
        model = core.resolve_model(body.get("model") or "deepseek-chat")
        messages = [Message("system", [TextPart(greeting)])] if greeting else []
        messages.append(Message("user", [TextPart(question)]))
        chat = ChatRequest(model=model, messages=messages, stream=body.get("stream") is True)
        async with core.turn(chat, caller) as turn:
            if not chat.stream:
                result = await turn.collect()
                return web.json_response({"answer": result.text, "thinking": result.reasoning,
                                          "model": model.requested})
            return await api.relay(core.sse(request), turn, HelloRenderer())

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
