"""Whole-text oracles for the tool-call tests: a finished answer split at
once into visible text and calls, and a whole text cleaned at once.

Both run the very streaming pieces the product uses (``ToolSieve``,
``TextCleaner``) in one piece, so the tests can compare any chunking of a
stream with the whole.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from ds2proxy.canonical import (
    TextDelta,
    ToolCall,
    ToolCallArgs,
    ToolCallStart,
    ToolChoice,
    ToolSpec,
)
from ds2proxy.toolcall.clean import TextCleaner
from ds2proxy.toolcall.ids import default_call_id
from ds2proxy.toolcall.sieve import ToolSieve


@dataclass(slots=True)
class ParsedTurn:
    """Cleaned visible text and the calls, in order."""

    visible_text: str
    calls: list[ToolCall] = field(default_factory=list)


def parse_turn(text: str, tools: list[ToolSpec], choice: ToolChoice, *, reasoning: str = "",
               single_call: bool = False,
               new_call_id: Callable[[], str] = default_call_id) -> ParsedTurn:
    """Split a finished answer into visible text and tool calls."""
    sieve = ToolSieve(tools, choice, single_call=single_call, new_call_id=new_call_id)
    events = sieve.feed(text) + sieve.flush() + sieve.finish(reasoning)
    visible = "".join(e.text for e in events if isinstance(e, TextDelta))
    starts = {e.index: e for e in events if isinstance(e, ToolCallStart)}
    calls = [
        _tool_call(starts[e.index], e.arguments) for e in events if isinstance(e, ToolCallArgs)
    ]
    return ParsedTurn(visible, calls)


def clean_visible_text(text: str) -> str:
    """§4.9 cleaning of a whole text."""
    cleaner = TextCleaner()
    return cleaner.feed(text) + cleaner.flush()


def _tool_call(start: ToolCallStart, arguments: str) -> ToolCall:
    value = arguments if start.kind == "custom" else json.loads(arguments)
    return ToolCall(start.id, start.name, value, start.kind)
