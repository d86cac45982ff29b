"""How much work flattening a request is, to decide where it runs.

Flattening costs 10–40 ms per MB of conversation (more per message than per
character), and coding agents send several MB: on the event loop that holds
every other stream for as long. A request above :data:`THREADED_ABOVE`
flattens in a worker thread; smaller ones stay on the loop, where the hop to
a thread would cost more than the work. The weight is a cheap estimate in
characters: what the texts hold, plus a fixed cost per message part and per
declared tool (a tool's schema becomes prompt text too).
"""

from __future__ import annotations

from ds2proxy.canonical import ChatRequest, ReasoningPart, TextPart, ToolCall, ToolResult

# About 2 ms of flattening, in weight characters.
THREADED_ABOVE = 64_000
PART_WEIGHT = 200
TOOL_WEIGHT = 2_000
CONTAINER_ITEM_WEIGHT = 64


def _part_weight(part: object) -> int:
    if isinstance(part, (TextPart, ReasoningPart)):
        return len(part.text)
    if isinstance(part, ToolResult):
        return len(part.content) + PART_WEIGHT * len(part.attachments)
    if isinstance(part, ToolCall):
        args = part.arguments
        if isinstance(args, str):
            return len(args)
        return CONTAINER_ITEM_WEIGHT * len(args) if isinstance(args, (dict, list)) else 0
    return 0


def flattening_weight(chat: ChatRequest, stop_above: int = THREADED_ABOVE) -> int:
    """The estimate, counted only until it passes ``stop_above``."""
    weight = TOOL_WEIGHT * len(chat.tools)
    for message in chat.messages:
        if weight > stop_above:
            break
        weight += PART_WEIGHT * (1 + len(message.parts))
        weight += sum(_part_weight(part) for part in message.parts)
    return weight


def flattens_in_thread(chat: ChatRequest) -> bool:
    """Whether ``chat`` is worth flattening off the event loop."""
    return flattening_weight(chat, THREADED_ABOVE) > THREADED_ABOVE
