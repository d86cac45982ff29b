"""Run whole rounds through :class:`StreamParser` and collect what a client would see.

Used by tests (recordings, the fake's streams) to compare reasoning and
answer text byte for byte, and to count the rounds that asked for a continue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..upstream.events import TextChunk, UpstreamEvent
from ..upstream.stream_parser import StreamParser


@dataclass
class Reconstruction:
    """The text and end state of a turn, plus every event in order."""

    parser: StreamParser
    events: list[UpstreamEvent] = field(default_factory=list)
    continue_after: list[bool] = field(default_factory=list)

    def feed_round(self, body: bytes) -> None:
        """One HTTP response body: ``start_round``, every line, then note ``should_continue``."""
        self.parser.start_round()
        for line in lines_of(body):
            self.events.extend(self.parser.feed_line(line))
        self.continue_after.append(self.parser.should_continue)

    def finish(self) -> None:
        """The turn is over: the text the parser held back (see ``StreamParser.finish``)."""
        self.events.extend(self.parser.finish())

    def text(self, kind: str) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TextChunk) and e.kind == kind)

    @property
    def thinking(self) -> str:
        return self.text("thinking")

    @property
    def answer(self) -> str:
        return self.text("answer")


def lines_of(body: bytes) -> list[str]:
    """The lines of a body as the client's line splitter yields them."""
    lines = body.decode("utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def reconstruct(rounds: Iterable[bytes], *, thinking_enabled: bool = True) -> Reconstruction:
    """Feed each round's body (``start_round`` first), record ``should_continue``
    after it, then end the turn (:meth:`Reconstruction.finish`)."""
    result = Reconstruction(StreamParser(thinking_enabled=thinking_enabled))
    for body in rounds:
        result.feed_round(body)
    result.finish()
    return result
