"""A minimal third-party dialect for ds2proxy.

``POST /hello/v1/ask`` takes ``{"model": "...", "question": "...", "stream": bool}``
and answers ``{"answer": "...", "thinking": "...", "model": "..."}``, or with
``"stream": true`` SSE events ``thinking`` / ``answer`` / ``done``. It uses
only the public plugin API: parse into a canonical ChatRequest, let the core
run the turn, render the canonical events.
"""

from __future__ import annotations

from aiohttp import web

from ds2proxy.canonical import ChatRequest, ErrorEvent, Message, ReasoningDelta, TextDelta, TextPart
from ds2proxy.errors import InvalidRequest
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
            writer = core.sse(request)
            async for event in writer.pace(turn.events()):
                if isinstance(event, ErrorEvent):
                    if not writer.prepared:
                        raise event.error
                    await writer.send({"message": event.error.message}, event="error")
                elif isinstance(event, ReasoningDelta):
                    await writer.send({"text": event.text}, event="thinking")
                elif isinstance(event, TextDelta):
                    await writer.send({"text": event.text}, event="answer")
            await writer.send({}, event="done")
            return await writer.finish()

    api.route("POST", "/hello/v1/ask", ask, errors=api.errors.openai)
