"""``streamGenerateContent``: turn events → Gemini chunks, SSE or JSON array.

Text and thoughts go out as they are released, one chunk behind: the last
content chunk is held so that ``finishReason`` and ``usageMetadata`` ride
on it, as Google's own stream does — a separate empty closing chunk would
make ``chunk.text`` None in Google's quickstart loop. A ``functionCall``
chunk is sent when the call is complete (Gemini carries ``args`` as one
object). The last chunk always holds ``finishReason`` and ``usageMetadata``
— Gemini CLI re-sends the whole turn when it is missing (tool-calling
§5.4, agent-clients §3). A failure after the first byte ends the stream with a
Google-shaped ``{"error": …}`` chunk, which the official clients raise.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ds2proxy.plugin_api import (
    ChatRequest,
    Citation,
    Finish,
    PluginAPI,
    ProxyError,
    ReasoningDelta,
    StreamWriter,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    Turn,
    TurnEvent,
    Usage,
    google_error_body,
)

from .render import call_part, candidate, response, thought_part
from .request import GeminiRequest


class StreamRenderer:
    """Turn events → Gemini chunk objects (framing is the writer's)."""

    def __init__(self, chat: ChatRequest, response_id: str, *, show_thoughts: bool = False) -> None:
        self.chat = chat
        self.id = response_id
        self.show_thoughts = show_thoughts
        self._calls: dict[int, list[str]] = {}
        self._citations: list[Citation] = []
        self._usage = Usage(0, 0, 0)
        self._held: list[dict[str, Any]] | None = None

    def frames(self, event: TurnEvent) -> list[dict[str, Any]]:
        if isinstance(event, ReasoningDelta):
            return self._hold([thought_part(event.text)]) if (
                self.show_thoughts and event.text) else []
        if isinstance(event, TextDelta):
            return self._hold([{"text": event.text}]) if event.text else []
        if isinstance(event, ToolCallStart):
            self._calls[event.index] = [event.name]
        elif isinstance(event, ToolCallArgs):
            self._calls.setdefault(event.index, [""]).append(event.arguments)
        elif isinstance(event, ToolCallEnd):
            return self._release(event.index)
        elif isinstance(event, Citation):
            self._citations.append(event)
        elif isinstance(event, Usage):
            self._usage = event
        elif isinstance(event, Finish):
            return [*self._release(*self._calls), self._last(event.reason)]
        return []

    def error(self, error: ProxyError) -> list[dict[str, Any]]:
        """The held chunk, then a Google-shaped ``{"error": …}`` chunk."""
        return [*self._flush(), google_error_body(error)]

    def end(self) -> list[dict[str, Any]]:
        return self._flush()

    def _release(self, *indexes: int) -> list[dict[str, Any]]:
        """The chunk of each completed call (a call never seen whole is not sent)."""
        chunks = []
        for index in sorted(indexes):
            name, *arguments = self._calls.pop(index)
            if name:
                chunks += self._hold([call_part(name, "".join(arguments))])
        return chunks

    def _hold(self, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keep ``parts`` back; send the chunk held before them."""
        ready = self._flush()
        self._held = parts
        return ready

    def _flush(self) -> list[dict[str, Any]]:
        held, self._held = self._held, None
        return [] if held is None else [response(self.chat, self.id, candidate(held))]

    def _last(self, reason: str) -> dict[str, Any]:
        """The held content with the finish and usage folded in (an empty
        text part when the turn said nothing, so ``.text`` is never None)."""
        parts, self._held = self._held or [{"text": ""}], None
        cand = candidate(parts, finish=reason, citations=self._citations)
        return response(self.chat, self.id, cand, self._usage)


def stream_writer(api: PluginAPI, request: web.Request) -> StreamWriter:
    """``?alt=sse`` → Server-Sent Events; otherwise Google's streamed JSON array."""
    if request.query.get("alt", "").lower() == "sse":
        # google-genai reads a comment line as JSON and fails: keep-alives are blank lines.
        return api.sse(request, blank_keepalive=True)
    return api.json_array(request)


async def respond_stream(api: PluginAPI, request: web.Request, turn: Turn,
                         gemini: GeminiRequest) -> web.StreamResponse:
    """Relay an open turn as chunks; an error before the first byte stays an HTTP error."""
    renderer = StreamRenderer(gemini.chat, turn.id, show_thoughts=gemini.show_thoughts)
    return await api.relay(stream_writer(api, request), turn, renderer)
