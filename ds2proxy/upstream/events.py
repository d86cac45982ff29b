"""What the stream parser reports about one DeepSeek completion stream.

The parser turns SSE lines into these small frozen values; the turn pipeline
turns them into canonical ``TurnEvent``s. They carry upstream facts only:
no dialect, no client-side decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TextKind = Literal["thinking", "answer"]


@dataclass(frozen=True, slots=True)
class TextChunk:
    """New reasoning or answer text, byte-exact (whitespace-only chunks included)."""

    kind: TextKind
    text: str


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """The response status moved (``WIP``, ``FINISHED``, ``INCOMPLETE``, ``CONTENT_FILTER``)."""

    status: str


@dataclass(frozen=True, slots=True)
class Ready:
    """The ``ready`` event that opens every round; the ids are what continue needs."""

    request_message_id: int | None
    response_message_id: int | None
    model_type: str | None


@dataclass(frozen=True, slots=True)
class Hint:
    """A server-side ``hint`` (e.g. ``finish_reason`` ``rate_limit_reached``): the round is void."""

    type: str
    content: str
    finish_reason: str


@dataclass(frozen=True, slots=True)
class UpstreamFault:
    """A ``data: {"error": …}`` frame: the upstream gave up mid-stream."""

    message: str


@dataclass(frozen=True, slots=True)
class ContentFiltered:
    """The answer was filtered; ``template`` is the refusal text, never to be shown as answer."""

    template: str


UpstreamEvent = TextChunk | StatusChanged | Ready | Hint | UpstreamFault | ContentFiltered
