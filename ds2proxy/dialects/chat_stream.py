"""OpenAI chat-completion streams: turn events → ``chat.completion.chunk``
payloads, and the answer to a chat request from an open turn.

Shared by every surface with chat-completions semantics (``/v1``,
``/api/v1``, ``/lm/v2``); each one's variations are a :class:`ChatStyle`.
A plain text or reasoning delta, nearly every chunk of a stream, is
rendered from a pre-encoded template (the bytes around its text), not built
and encoded as a dict each time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from ..canonical import (
    ChatRequest,
    Finish,
    ReasoningDelta,
    TextDelta,
    TextRun,
    ToolCallArgs,
    ToolCallStart,
    TurnEvent,
    Usage,
)
from ..errors import ProxyError
from ..frames import PayloadRun
from . import json_response
from ..error_bodies import openai_error_body
from .openai_chat import ChatStyle, chat_completion, finish_name, tool_call_entry

if TYPE_CHECKING:
    from ..plugin_api import PluginContext, Turn

_HOLE = "\x00text"


class ChatStreamRenderer:
    """Turn events → ``chat.completion.chunk`` payloads (framing is the writer's)."""

    def __init__(self, chat: ChatRequest, turn_id: str, created: int,
                 style: ChatStyle | None = None) -> None:
        self.chat = chat
        self.style = style or ChatStyle()
        self.id = self.style.chunk_id(turn_id) if self.style.chunk_id else turn_id
        self.created = created
        self._started = False
        self._pending: ToolCallStart | None = None
        self._custom: set[int] = set()  # indexes of freeform calls (``custom.input``)
        self._in_think = False
        self._usage: Usage | None = None
        # The bytes of a content (reasoning) chunk around its text, once started.
        self._text_frame = self._around("content")
        self._reasoning_frame = None if self.style.reasoning_inline else self._around(
            "reasoning_content")

    def _around(self, key: str) -> tuple[bytes, bytes] | None:
        """The bytes of a chunk whose delta is ``{key: text}``, before and after the text."""
        around = orjson.dumps(self._chunk({key: _HOLE})).split(orjson.dumps(_HOLE))
        return (around[0], around[1]) if len(around) == 2 else None

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        if self.style.content_always and "content" not in delta:
            delta = {**delta, "content": ""}
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if self.style.chunk_logprobs:
            choice["logprobs"] = None
        chunk: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk",
                                 "created": self.created, "model": self.chat.model.requested,
                                 "choices": [choice]}
        if self.chat.include_usage and self.style.usage_on_every_chunk:
            chunk["usage"] = None
        return chunk

    def _delta(self, delta: dict) -> dict:
        if not self._started:
            self._started = True
            delta = {"role": "assistant", **delta}
        return self._chunk(delta)

    @property
    def usage_in_stream(self) -> bool:
        """Usage is sent only when the client asked (``include_usage``)."""
        return self.chat.include_usage

    # The relay may hand over runs of answer texts as one TextRun.
    text_runs = True

    def frames(self, event: TurnEvent) -> list[Any]:
        """Chunks for one event (a plain text or reasoning delta as
        pre-encoded bytes, a run of text deltas as one PayloadRun)."""
        if (type(event) is TextDelta and self._started and self._pending is None
                and not self._in_think and self._text_frame is not None):
            head, tail = self._text_frame
            return [head + orjson.dumps(event.text) + tail]
        if type(event) is TextRun:
            return self._run(event.texts)
        if (type(event) is ReasoningDelta and self._started and self._pending is None
                and self._reasoning_frame is not None):
            head, tail = self._reasoning_frame
            return [head + orjson.dumps(event.text) + tail]
        out: list[Any] = []
        if self.style.opening_chunk and not self._started:
            out.append(self._delta({"content": ""}))
        if self._pending is not None and not (isinstance(event, ToolCallArgs)
                                              and event.index == self._pending.index):
            out.append(self._call_frame(self._pending, ""))
            self._pending = None
        if isinstance(event, ReasoningDelta):
            out += self._reasoning(event.text)
        elif isinstance(event, TextDelta):
            out += self._close_think()
            out.append(self._delta({"content": event.text}))
        elif isinstance(event, ToolCallStart):
            out += self._close_think()
            self._pending = event
            if event.kind == "custom":
                self._custom.add(event.index)
        elif isinstance(event, ToolCallArgs):
            if self._pending is not None:
                out.append(self._call_frame(self._pending, event.arguments))
                self._pending = None
            else:
                field = "input" if event.index in self._custom else "arguments"
                kind = "custom" if field == "input" else "function"
                out.append(self._delta({"tool_calls": [
                    {"index": event.index, kind: {field: event.arguments}}]}))
        elif isinstance(event, Usage):
            self._usage = event
        elif isinstance(event, Finish):
            out += self._finish(event)
        return out

    def frames_of(self, batch: list[TurnEvent]) -> list[Any]:
        """The chunks of a batch of events, as :meth:`frames` gives them one
        by one; the plain text deltas in the loop itself."""
        out: list[Any] = []
        append, frames, dumps = out.append, self.frames, orjson.dumps
        for event in batch:
            if (type(event) is TextDelta and self._started and self._pending is None
                    and not self._in_think and self._text_frame is not None):
                head, tail = self._text_frame
                append(head + dumps(event.text) + tail)
            else:
                out += frames(event)
        return out

    def _run(self, texts: list[str]) -> list[Any]:
        """The chunks of a run of text deltas: the first ones the long way
        until plain content chunks apply (the opening delta, a closing
        think tag, a pending call), then the rest as one PayloadRun."""
        out: list[Any] = []
        for at, text in enumerate(texts):
            if (self._started and self._pending is None and not self._in_think
                    and self._text_frame is not None):
                head, tail = self._text_frame
                out.append(PayloadRun(head, tail, texts[at:] if at else texts))
                break
            out += self.frames(TextDelta(text))
        return out

    def error(self, error: ProxyError) -> list[Any]:
        """The in-band error chunk, then the ``[DONE]`` terminator."""
        return [self.error_frame(error), "[DONE]"]

    def end(self) -> list[Any]:
        return ["[DONE]"]

    def _call_frame(self, start: ToolCallStart, arguments: str) -> dict:
        entry = tool_call_entry(start.id, start.name, arguments, start.kind)
        return self._delta({"tool_calls": [{"index": start.index, **entry}]})

    def _reasoning(self, text: str) -> list[dict]:
        if not self.style.reasoning_inline:
            return [self._delta({"reasoning_content": text})]
        prefix = "" if self._in_think else "<think>\n"
        self._in_think = True
        return [self._delta({"content": prefix + text})]

    def _close_think(self) -> list[dict]:
        if not self._in_think:
            return []
        self._in_think = False
        return [self._delta({"content": "\n</think>\n\n"})]

    def _finish(self, event: Finish) -> list[dict]:
        out = self._close_think()
        if not self._started:
            out.append(self._delta({"content": ""}))
        last = self._chunk({}, finish_name(self.style, event.reason, event.stop_sequence))
        out.append(last)
        if not self.chat.include_usage or self._usage is None:
            return out
        if self.style.usage_in_finish_chunk:
            last["usage"] = self.style.usage(self._usage)
        else:
            out.append({"id": self.id, "object": "chat.completion.chunk",
                        "created": self.created, "model": self.chat.model.requested,
                        "choices": [], "usage": self.style.usage(self._usage)})
        return out

    @staticmethod
    def error_frame(err: ProxyError) -> dict:
        return {"status_code": err.status, **openai_error_body(err)}


async def respond_chat(api: PluginContext, request: web.Request, turn: Turn,
                       chat: ChatRequest, style: ChatStyle | None = None
                       ) -> web.StreamResponse:
    """Answer a chat-completions request from an open turn, stream or not."""
    if not chat.stream:
        result = await turn.collect()
        return json_response(chat_completion(result, chat, turn.created, style))
    renderer = ChatStreamRenderer(chat, turn.id, turn.created, style)
    return await api.relay(api.sse(request), turn, renderer)
