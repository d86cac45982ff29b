"""The non-stream collector folds events exactly as a plain string fold does.

The reference below appends to strings (the obvious, quadratic way); the
collector keeps fragments and joins them once. Both must build the same
TurnResult for long and adversarial event sequences, with runs of text
handed over as TextRun events too.
"""

from __future__ import annotations

import random

from ds2proxy.canonical import (
    Citation,
    CollectedCall,
    Finish,
    ReasoningDelta,
    TextDelta,
    TextRun,
    ToolCallArgs,
    ToolCallStart,
    TurnEvent,
    TurnResult,
    Usage,
)
from ds2proxy.collect import TurnCollector

PIECES = ["a", " ", "\n", "", "ü", "😀", "\x00", "CONTENT_", "FILTER", "{\"x\":", "}", "\t" * 3]


def reference_fold(events: list[TurnEvent]) -> TurnResult:
    result = TurnResult(id="t")
    for event in events:
        if isinstance(event, TextDelta):
            result.text += event.text
            if result.segments and result.segments[-1][0] == "text":
                result.segments[-1] = ("text", result.segments[-1][1] + event.text)
            else:
                result.segments.append(("text", event.text))
        elif isinstance(event, ReasoningDelta):
            result.reasoning += event.text
        elif isinstance(event, ToolCallStart):
            result.calls.append(CollectedCall(event.id, event.name, "", event.kind))
            result.segments.append(("call", event.index))
        elif isinstance(event, ToolCallArgs):
            result.calls[event.index].arguments += event.arguments
        elif isinstance(event, Citation):
            result.citations.append(event)
        elif isinstance(event, Usage):
            result.usage = event
        elif isinstance(event, Finish):
            result.finish = event.reason
    return result


def collected(events: list[TurnEvent]) -> TurnResult:
    collector = TurnCollector()
    for event in events:
        collector.add(event)
    return collector.result("t")


def random_events(rng: random.Random, count: int) -> list[TurnEvent]:
    events: list[TurnEvent] = []
    calls = 0
    for _ in range(count):
        roll = rng.random()
        if roll < 0.5:
            events.append(TextDelta(rng.choice(PIECES)))
        elif roll < 0.7:
            events.append(ReasoningDelta(rng.choice(PIECES)))
        elif roll < 0.75:
            events.append(ToolCallStart(calls, f"call_{calls}", "fn",
                                        rng.choice(["function", "custom"])))
            calls += 1
        elif roll < 0.9 and calls:
            events.append(ToolCallArgs(rng.randrange(calls), rng.choice(PIECES)))
        elif roll < 0.94:
            events.append(Citation(rng.randint(0, 3), "https://a.example/", "A"))
        elif roll < 0.97:
            events.append(Usage(rng.randint(0, 9), rng.randint(0, 9), rng.randint(0, 9)))
        else:
            events.append(Finish(rng.choice(["stop", "length", "tool_calls",
                                              "content_filter"])))
    return events


def test_random_sequences_fold_like_the_reference() -> None:
    rng = random.Random(20261205)
    for _ in range(300):
        events = random_events(rng, rng.randint(0, 60))
        assert collected(events) == reference_fold(events)


def test_long_answer_with_interleaved_calls_folds_like_the_reference() -> None:
    rng = random.Random(7)
    events = random_events(rng, 40000)
    result = collected(events)
    assert result == reference_fold(events)
    assert len(result.segments) > 100


def test_one_huge_answer_is_every_chunk_in_order() -> None:
    chunks = [f"{i:06d}" for i in range(80000)]
    result = collected([TextDelta(c) for c in chunks] + [Finish("length")])
    assert result.text == "".join(chunks)
    assert result.segments == [("text", result.text)]
    assert result.finish == "length"


def test_nothing_collected_keeps_the_defaults() -> None:
    assert collected([]) == TurnResult(id="t")


def as_runs(events: list[TurnEvent], rng: random.Random) -> list[TurnEvent]:
    """Runs of consecutive non-empty text deltas as TextRun events, cut at random."""
    out: list[TurnEvent] = []
    for event in events:
        if isinstance(event, TextDelta) and event.text:
            last = out[-1] if out else None
            if type(last) is TextRun and rng.random() < 0.8:
                last.texts.append(event.text)
            else:
                out.append(TextRun([event.text]))
        else:
            out.append(event)
    return out


def test_text_runs_fold_as_their_deltas() -> None:
    """A TextRun (what the turn hands a collecting caller) folds as the
    TextDelta of each of its texts, segments included."""
    rng = random.Random(1205)
    for _ in range(300):
        events = [e for e in random_events(rng, rng.randint(0, 80))
                  if not (isinstance(e, TextDelta) and not e.text)]
        runs = as_runs(events, rng)
        assert collected(runs) == reference_fold(events)
        assert any(type(e) is TextRun for e in runs) or not any(
            isinstance(e, TextDelta) for e in events)
