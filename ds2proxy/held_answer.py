"""A provider's structured answer, held and settled as the pool's is.

The pool's turn holds a JSON-mode or enum answer and sends it once checked
(:func:`~ds2proxy.structured.settle`: the enum value it names, or its JSON
extracted from fences or prose, checked against the schema and written
compactly). A provider's answer goes through :class:`HeldAnswer` for the
same result: an OpenAI-compatible API has no enum mode, and many ignore
``response_format`` or answer in a code fence.
"""

from __future__ import annotations

from .canonical import Finish, ResponseFormat, TextDelta, ToolCallStart, TurnEvent
from .structured import settle


class HeldAnswer:
    """A streamed answer's text held until its end, then settled (reasoning
    and the rest pass at once). An answer that called a tool, or that its
    limit or the content filter cut, goes out as written: it cannot be
    repaired, as on the pool's path."""

    def __init__(self, fmt: ResponseFormat) -> None:
        self.fmt = fmt
        self.written: list[str] = []
        self._called = False

    def feed(self, events: list[TurnEvent]) -> list[TurnEvent]:
        """``events`` without their answer text, which is kept."""
        out: list[TurnEvent] = []
        for event in events:
            if type(event) is TextDelta:
                self.written.append(event.text)
                continue
            self._called = self._called or type(event) is ToolCallStart
            out.append(event)
        return out

    def settle(self, tail: list[TurnEvent]) -> list[TurnEvent]:
        """``tail`` (held text, usage, finish) with the settled answer text
        before it; JSONOutputError when the answer cannot be used."""
        rest = self.feed(tail)
        written = "".join(self.written)
        finish = next((e.reason for e in rest if type(e) is Finish), "stop")
        text = written if self._called or finish != "stop" else settle(written, self.fmt)
        self.written.clear()
        return ([TextDelta(text)] if text else []) + rest
