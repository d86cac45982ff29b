"""Canonical turn events → Ollama chat / generate objects.

A stream is one object per line: progress chunks with ``done: false`` and
a final one with ``done: true``, the ``done_reason``, the token counts from
the turn's usage and the durations in nanoseconds. Tool calls go out whole
(arguments as an object) once their arguments are complete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ds2proxy.plugin_api import (
    Finish,
    ProxyError,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    TurnEvent,
    TurnResult,
    Usage,
)
from ds2proxy.dialects.openai_chat import arguments_object

Kind = Literal["chat", "generate"]
DONE_REASONS = {"stop": "stop", "tool_calls": "stop", "length": "length",
                "content_filter": "content_filter"}


def created_at() -> str:
    """RFC 3339 in UTC with a ``Z``, as Ollama writes it."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Clock:
    """Durations for the final object: load = until the upstream answered the
    opening (account, session, proof of work), prompt eval = until the first
    output, eval = the rest."""

    start: int = field(default_factory=time.monotonic_ns)
    opened: int = 0
    first: int = 0

    def mark_opened(self) -> None:
        self.opened = time.monotonic_ns()

    def mark_output(self) -> None:
        if not self.first:
            self.first = time.monotonic_ns()

    def durations(self) -> dict[str, int]:
        end = time.monotonic_ns()
        opened = self.opened or end
        first = self.first or end
        return {"total_duration": end - self.start, "load_duration": opened - self.start,
                "prompt_eval_duration": max(first - opened, 0),
                "eval_duration": max(end - first, 0)}


def tool_call_object(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A call with its arguments as an object; the id lets a client name it
    back in ``tool_call_id`` (results may also just name the tool)."""
    return {"id": call_id, "function": {"index": index, "name": name,
                                        "arguments": arguments_object(arguments)}}


def load_object(model: str, kind: Kind, unload: bool = False) -> dict[str, Any]:
    """The answer to an empty prompt: the model is "loaded" (or, with
    ``keep_alive: 0``, "unloaded"); nothing is generated."""
    body = _base(model, kind, "", None)
    body.update(done=True, done_reason="unload" if unload else "load")
    return body


def _base(model: str, kind: Kind, text: str, thinking: str | None,
          calls: list[dict] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "created_at": created_at()}
    if kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            message["thinking"] = thinking
        if calls:
            message["tool_calls"] = calls
        body["message"] = message
    else:
        body["response"] = text
        if thinking:
            body["thinking"] = thinking
    body["done"] = False
    return body


def _final(body: dict[str, Any], reason: str, usage: Usage | None, clock: Clock) -> dict:
    body["done"] = True
    body["done_reason"] = DONE_REASONS.get(reason, "stop")
    usage = usage or Usage(0, 0, 0)
    body.update(clock.durations())
    body["prompt_eval_count"] = usage.prompt_tokens
    body["eval_count"] = usage.completion_tokens
    return body


def whole_object(result: TurnResult, model: str, kind: Kind, clock: Clock) -> dict[str, Any]:
    """The ``"stream": false`` answer."""
    calls = [tool_call_object(i, c.id, c.name, c.arguments)
             for i, c in enumerate(result.calls)]
    body = _base(model, kind, result.text, result.reasoning or None, calls)
    return _final(body, result.finish, result.usage, clock)


class StreamRenderer:
    """Events → progress chunks; the Finish event yields the final chunk."""

    def __init__(self, model: str, kind: Kind, clock: Clock) -> None:
        self.model = model
        self.kind = kind
        self.clock = clock
        self._calls: dict[int, list[str]] = {}  # index → [id, name, arguments so far]
        self._usage: Usage | None = None

    def heartbeat(self) -> dict[str, Any]:
        """An empty progress chunk: keeps the connection alive, changes nothing."""
        return _base(self.model, self.kind, "", None)

    def frames(self, event: TurnEvent) -> list[dict[str, Any]]:
        if isinstance(event, ReasoningDelta | TextDelta | ToolCallStart):
            self.clock.mark_output()
        if isinstance(event, ReasoningDelta) and event.text:
            return [_base(self.model, self.kind, "", event.text)]
        if isinstance(event, TextDelta) and event.text:
            return [_base(self.model, self.kind, event.text, None)]
        if isinstance(event, ToolCallStart):
            self._calls[event.index] = [event.id, event.name, ""]
        elif isinstance(event, ToolCallArgs) and event.index in self._calls:
            self._calls[event.index][2] += event.arguments
        elif isinstance(event, ToolCallEnd) and event.index in self._calls:
            return [self._call_chunk([event.index])]
        elif isinstance(event, Usage):
            self._usage = event
        elif isinstance(event, Finish):
            return self._finish(event)
        return []

    def error(self, error: ProxyError) -> list[dict[str, Any]]:
        """Ollama's in-band error line."""
        return [{"error": error.message}]

    def end(self) -> list[dict[str, Any]]:
        return []

    def _call_chunk(self, indexes: list[int]) -> dict[str, Any]:
        calls = [tool_call_object(i, *self._calls.pop(i)) for i in indexes]
        return _base(self.model, self.kind, "", None, calls)

    def _finish(self, event: Finish) -> list[dict[str, Any]]:
        out = [self._call_chunk(sorted(self._calls))] if self._calls else []
        out.append(_final(_base(self.model, self.kind, "", None), event.reason, self._usage,
                          self.clock))
        return out
