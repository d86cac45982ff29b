"""Responses stream builder CPU per delta for long answers and long calls.

Every delta of a Responses stream goes through the builder on the event loop:
a message's text, a reasoning summary, or a function call's arguments (a
coding agent writing a whole file through a call, a few characters a chunk).
A builder that re-copies the item's text per delta costs time that grows
with the square of its length; a linear one costs about the same per delta
at any size.

    python bench/responses_builder_bench.py [--deltas 10000,80000,160000] [--chunk 4]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

from ds2proxy.plugin_api import (
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    TurnEvent,
)
from ds2proxy_plugins.openai.responses_builder import ResponseBuilder, ResponseHeader


def events(kind: str, deltas: int, chunk: int) -> Iterator[TurnEvent]:
    piece = "x" * chunk
    if kind == "call":
        yield ToolCallStart(0, "call_1", "write_file")
        yield from (ToolCallArgs(0, piece) for _ in range(deltas))
        yield ToolCallEnd(0)
    elif kind == "reasoning":
        yield from (ReasoningDelta(piece) for _ in range(deltas))
    else:
        yield from (TextDelta(piece) for _ in range(deltas))


def run(kind: str, deltas: int, chunk: int) -> float:
    """Seconds to feed and finish one response of ``deltas`` deltas."""
    builder = ResponseBuilder(ResponseHeader("resp_bench", 0, "deepseek-chat"))
    started = time.perf_counter()
    for event in events(kind, deltas, chunk):
        builder.feed(event)
    builder.finish()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deltas", default="10000,80000,160000")
    parser.add_argument("--chunk", type=int, default=4)
    args = parser.parse_args()
    for kind in ("text", "reasoning", "call"):
        for deltas in (int(n) for n in args.deltas.split(",")):
            seconds = run(kind, deltas, args.chunk)
            print(f"{kind:9} {deltas:7} deltas: {seconds:7.3f} s, "
                  f"{seconds / deltas * 1e6:6.2f} us per delta")


if __name__ == "__main__":
    main()
