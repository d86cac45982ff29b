"""Turn events → the Responses stream (tool-calling §5.2) and the response object.

One state machine serves both modes: a stream sends the events as they come,
a non-stream answer replays the collected turn through it and keeps only the
final object, so the two can never disagree. Reasoning, text and calls each
get their own output item; a new kind of output closes the open item first,
so a message is closed before the call after it is added. Whitespace-only
text is held back until visible text follows it, so blank text never becomes
a message item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ds2proxy.plugin_api import (
    Citation,
    ContentFiltered,
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

from .responses_input_items import output_item_id
from .responses_request import wire_name
from .responses_items import (
    CustomCallItem,
    Event,
    FunctionCallItem,
    MessageItem,
    OutputItem,
    ReasoningItem,
)

INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass
class ResponseHeader:
    """What identifies a response and what it echoes from the request."""

    id: str
    created_at: int
    model: str
    echo: dict[str, Any] = field(default_factory=dict)
    namespaces: dict[str, str] = field(default_factory=dict)


class ResponseBuilder:
    def __init__(self, header: ResponseHeader) -> None:
        self.header = header
        self.items: list[OutputItem] = []
        self.status = "in_progress"
        self._calls: dict[int, FunctionCallItem] = {}
        self._open: OutputItem | None = None
        self._held: list[str] = []  # blank text waiting for visible text
        self._seq = 0
        self._started = False
        self._usage: Usage | None = None
        self._finish = "stop"
        self._citations: list[Citation] = []
        self._error: ProxyError | None = None

    # -- the stream ------------------------------------------------------------

    def feed(self, event: TurnEvent) -> list[dict[str, Any]]:
        """Stream payloads for one event (``response.created`` before the first)."""
        return self.number(self._opening() + self._on(event))

    def finish(self) -> list[dict[str, Any]]:
        """Close every item, then ``response.completed``; ``.incomplete`` only
        when the requested token limit cut the answer. A filtered answer is
        complete as far as it goes (its reason stays in ``incomplete_details``):
        agents treat ``response.incomplete`` as a broken stream and retry. One
        filtered before any answer or call is ``response.failed``."""
        return self.number(self.closing())

    def closing(self) -> list[Event]:
        """:meth:`finish`'s events not numbered yet: the response is final
        (and can be stored) before they are sent, and numbered only if they are."""
        if self._finish == "content_filter" and not self._answered():
            self._error = ContentFiltered("the answer was filtered upstream")
            self.status = "failed"
            return [*self._opening(), self._failed_event()]
        cut = self._finish == "length"
        events = self._opening() + self._close_open(cut=cut)
        self.status = "incomplete" if cut else "completed"
        events.append((f"response.{self.status}", {"response": self.response()}))
        return events

    def fail(self, error: ProxyError) -> list[dict[str, Any]]:
        """``response.failed`` carrying the error; open items stay unfinished."""
        self._error = error
        self.status = "failed"
        return self.number([*self._opening(), self._failed_event()])

    def _failed_event(self) -> Event:
        assert self._error is not None
        return ("response.failed", {"response": self.response(),
                                    "status_code": self._error.status})

    def replay(self, result: TurnResult) -> dict[str, Any]:
        """The finished response object for a collected (non-stream) turn."""
        for event in turn_events(result):
            self.feed(event)
        self.finish()
        return self.response()

    # -- the object ------------------------------------------------------------

    def response(self) -> dict[str, Any]:
        header = self.header
        ended = self.status in ("completed", "incomplete")
        reason = INCOMPLETE_REASONS.get(self._finish) if ended else None
        return {
            "id": header.id,
            "object": "response",
            "created_at": header.created_at,
            "status": self.status,
            "error": _error_body(self._error),
            "incomplete_details": {"reason": reason} if reason else None,
            "model": header.model,
            "output": [item.snapshot() for item in self.items],
            "output_text": "".join(i.text for i in self.items if isinstance(i, MessageItem)),
            "usage": _usage_body(self._usage) if self.status != "in_progress" else None,
            **header.echo,
        }

    # -- internals -------------------------------------------------------------

    def _answered(self) -> bool:
        return any(isinstance(i, (MessageItem, FunctionCallItem, CustomCallItem))
                   for i in self.items)

    def _opening(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        return [("response.created", {"response": self.response()}),
                ("response.in_progress", {"response": self.response()})]

    def number(self, events: list[Event]) -> list[dict[str, Any]]:
        """Payloads of ``events``, each with the next ``sequence_number``."""
        out = []
        for kind, fields in events:
            out.append({"type": kind, "sequence_number": self._seq, **fields})
            self._seq += 1
        return out

    def _on(self, event: TurnEvent) -> list[Event]:
        if isinstance(event, ReasoningDelta):
            return self._grow(ReasoningItem, event.text)
        if isinstance(event, TextDelta):
            return self._text(event.text)
        if isinstance(event, ToolCallStart):
            return self._start_call(event)
        if isinstance(event, ToolCallArgs):
            call = self._calls.get(event.index)
            return call.delta(event.arguments) if call is not None and not call.closed else []
        if isinstance(event, ToolCallEnd):
            return self._end_call(event.index)
        if isinstance(event, Citation):
            self._citations.append(event)
        elif isinstance(event, Usage):
            self._usage = event
        elif isinstance(event, Finish):
            self._finish = event.reason
        return []

    def _text(self, text: str) -> list[Event]:
        if not isinstance(self._open, MessageItem) and not text.strip():
            self._held.append(text)
            return []
        text, self._held = "".join([*self._held, text]), []
        return self._grow(MessageItem, text)

    def _grow(self, kind: type[OutputItem], text: str) -> list[Event]:
        if not text:
            return []
        events: list[Event] = []
        if not isinstance(self._open, kind):
            events += self._close_open()
            events += self._add(kind(len(self.items)))
        assert self._open is not None
        return events + self._open.delta(text)

    def _add(self, item: OutputItem) -> list[Event]:
        item.id = output_item_id(item.prefix, self.header.id, item.index)
        self.items.append(item)
        self._open = item
        return item.open()

    def _start_call(self, event: ToolCallStart) -> list[Event]:
        events = self._close_open(keep_calls=True)
        self._held = []
        kind = CustomCallItem if event.kind == "custom" else FunctionCallItem
        namespaces = self.header.namespaces
        call = kind(len(self.items), event.id, wire_name(event.name, namespaces),
                    namespaces.get(event.name))
        self._calls[event.index] = call
        return events + self._add(call)

    def _end_call(self, index: int) -> list[Event]:
        call = self._calls.get(index)
        if call is None or call.closed:
            return []
        if call is self._open:
            self._open = None
        return call.close()

    def _close_open(self, keep_calls: bool = False, cut: bool = False) -> list[Event]:
        """Close the open item and (unless kept) any call still waiting for its end;
        ``cut``: the token limit ended the text or reasoning still open (a call
        is only ever emitted whole)."""
        events: list[Event] = []
        for item in self.items:
            if item.closed or (keep_calls and isinstance(item, FunctionCallItem)):
                continue
            if isinstance(item, MessageItem):
                item.cite(self._citations)
            events += item.close(cut=cut and not isinstance(item, FunctionCallItem))
        self._open = None
        return events


def turn_events(result: TurnResult) -> list[TurnEvent]:
    """A collected turn as the events that would have streamed it."""
    events: list[TurnEvent] = [ReasoningDelta(result.reasoning)] if result.reasoning else []
    segments = result.segments or [("text", result.text),
                                   *(("call", i) for i in range(len(result.calls)))]
    for kind, value in segments:
        if kind == "text":
            events.append(TextDelta(value))
            continue
        call = result.calls[value]
        events += [ToolCallStart(value, call.id, call.name, call.kind),
                   ToolCallArgs(value, call.arguments), ToolCallEnd(value)]
    events += [*result.citations, result.usage, Finish(result.finish)]
    return events


def _usage_body(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage(0, 0, 0)
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens,
                                     "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens}


def _error_body(error: ProxyError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"code": error.code, "message": error.message, "type": error.type}
