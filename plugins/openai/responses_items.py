"""The output items of a response, each with the stream events of its life.

An item is opened (``response.output_item.added`` plus its part events),
grows by deltas and is closed (its ``*.done`` events, then
``response.output_item.done``). Every method returns the events as
``(type, fields)`` pairs; numbering them is the builder's job. ``snapshot``
is the item as it stands, which is what the response object lists.
"""

from __future__ import annotations

import uuid
from typing import Any

from ds2proxy.plugin_api import Citation

Event = tuple[str, dict[str, Any]]


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 32 hex digits: unique across requests."""
    return f"{prefix}_{uuid.uuid4().hex}"


class OutputItem:
    prefix = "item"

    def __init__(self, index: int) -> None:
        self.index = index
        self.id = new_id(self.prefix)
        self._pieces: list[str] = []
        self.closed = False
        # Closed where the token limit cut it (its status says so).
        self.cut = False

    def open(self) -> list[Event]:
        return [("response.output_item.added", {"output_index": self.index,
                                                 "item": self.snapshot()})]

    @property
    def text(self) -> str:
        """The deltas so far, joined when read: appending each to one string
        copied the whole text at every delta, quadratic in a long answer
        (80,000 deltas held the event loop for about 11 s)."""
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    def delta(self, text: str) -> list[Event]:
        self._pieces.append(text)
        return [self._delta_event(text)]

    def close(self, cut: bool = False) -> list[Event]:
        self.closed = True
        self.cut = cut
        return [*self._done_events(), ("response.output_item.done",
                                       {"output_index": self.index, "item": self.snapshot()})]

    @property
    def status(self) -> str:
        if not self.closed:
            return "in_progress"
        return "incomplete" if self.cut else "completed"

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.id, "output_index": self.index}

    def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def _delta_event(self, text: str) -> Event:
        raise NotImplementedError

    def _done_events(self) -> list[Event]:
        raise NotImplementedError


class MessageItem(OutputItem):
    """Visible text: one ``output_text`` part."""

    prefix = "msg"

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.annotations: list[dict[str, Any]] = []

    def open(self) -> list[Event]:
        part = ("response.content_part.added", {**self._part_where(), "part": self._part("")})
        return [*super().open(), part]

    def cite(self, citations: list[Citation]) -> None:
        self.annotations = [{"type": "url_citation", "url": c.url, "title": c.title,
                             "start_index": 0, "end_index": 0} for c in citations]

    def snapshot(self) -> dict[str, Any]:
        content = [self._part(self.text)] if self.closed or self.text else []
        return {"type": "message", "id": self.id, "status": self.status, "role": "assistant",
                "content": content}

    def _part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": self.annotations}

    def _part_where(self) -> dict[str, Any]:
        return {**self._where(), "content_index": 0}

    def _delta_event(self, text: str) -> Event:
        return "response.output_text.delta", {**self._part_where(), "delta": text, "logprobs": []}

    def _done_events(self) -> list[Event]:
        where = self._part_where()
        return [("response.output_text.done", {**where, "text": self.text, "logprobs": []}),
                ("response.content_part.done", {**where, "part": self._part(self.text)})]


class ReasoningItem(OutputItem):
    """Shown reasoning, as the one summary part of a ``reasoning`` item."""

    prefix = "rs"

    def open(self) -> list[Event]:
        part = ("response.reasoning_summary_part.added",
                {**self._summary_where(), "part": self._summary("")})
        return [*super().open(), part]

    def snapshot(self) -> dict[str, Any]:
        summary = [self._summary(self.text)] if self.closed or self.text else []
        return {"type": "reasoning", "id": self.id, "status": self.status, "summary": summary,
                "content": None, "encrypted_content": None}

    @staticmethod
    def _summary(text: str) -> dict[str, Any]:
        return {"type": "summary_text", "text": text}

    def _summary_where(self) -> dict[str, Any]:
        return {**self._where(), "summary_index": 0}

    def _delta_event(self, text: str) -> Event:
        return "response.reasoning_summary_text.delta", {**self._summary_where(), "delta": text}

    def _done_events(self) -> list[Event]:
        where = self._summary_where()
        return [("response.reasoning_summary_text.done", {**where, "text": self.text}),
                ("response.reasoning_summary_part.done",
                 {**where, "part": self._summary(self.text)})]


class FunctionCallItem(OutputItem):
    """A function call; its text is the JSON arguments."""

    prefix = "fc"
    field = "arguments"
    events = "response.function_call_arguments"

    def __init__(self, index: int, call_id: str, name: str, namespace: str | None = None
                 ) -> None:
        super().__init__(index)
        self.call_id = call_id
        self.name = name
        self.namespace = namespace

    def snapshot(self) -> dict[str, Any]:
        item = {"type": self.item_type, "id": self.id, "call_id": self.call_id,
                "name": self.name, self.field: self.text, "status": self.status}
        if self.namespace:
            item["namespace"] = self.namespace
        return item

    @property
    def item_type(self) -> str:
        return "function_call"

    def _delta_event(self, text: str) -> Event:
        return f"{self.events}.delta", {**self._where(), "call_id": self.call_id, "delta": text}

    def _done_events(self) -> list[Event]:
        return [(f"{self.events}.done", {**self._where(), "call_id": self.call_id,
                                         "name": self.name, self.field: self.text})]


class CustomCallItem(FunctionCallItem):
    """A freeform (``custom``) tool call; its text is the raw input."""

    prefix = "ctc"
    field = "input"
    events = "response.custom_tool_call_input"

    @property
    def item_type(self) -> str:
        return "custom_tool_call"
