"""A run of answer chunks taken in one go (``TurnShaper.on_answers``, as the
parser hands them over) shapes exactly as the same chunks one by one: the same
events, whether any visible text went out, usage and finish, whatever the text holds (markers,
tags, fences, citations, tool calls) and however it is cut into runs; a plain
run handed over as one TextRun stands for exactly those events.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ds2proxy.canonical import ChatRequest, ResolvedModel, TextRun, ToolSpec, TurnEvent
from ds2proxy.shaping import ShapingSettings, TurnShaper

MODEL = ResolvedModel("deepseek-chat", "deepseek-chat", "default", False, False)
PIECES = ["Hello", " world", ".", "\n\n", "ab", "[reference:1]", "[", "reference:", "2]",
          "<think>", "</", "think>", "```", "json\n", "{\"a\": 1}", "`x`", "中文", "🎉",
          "<｜DSML｜function_calls>", "<｜DSML｜invoke name=\"read\">", "</｜DSML｜invoke>",
          "</｜DSML｜function_calls>", " ", "", "<tool_call>", "|end|"]
READ = ToolSpec(name="read", description="Read", parameters={"type": "object", "properties": {}})


def shaper_for(tools: bool, citations: str) -> TurnShaper:
    chat = ChatRequest(model=MODEL, messages=[], tools=[READ] if tools else [])
    cites = [(1, "https://a.example/", "A"), (2, "https://b.example/", "B")]
    return TurnShaper(chat, ShapingSettings(citation_style=citations), 3, lambda: cites)


def finish(shaper: TurnShaper, events: list[TurnEvent]) -> tuple:
    events = events + shaper.flush() + shaper.tail()
    return events, shaper.has_visible_output, shaper.emitted, shaper.completion_tokens


def one_by_one(texts: list[str], tools: bool, citations: str) -> tuple:
    shaper = shaper_for(tools, citations)
    events: list[TurnEvent] = []
    for text in texts:
        events += shaper.on_answer(text)
    return finish(shaper, events)


def in_runs(texts: list[str], tools: bool, citations: str, rnd: random.Random,
            text_runs: bool = False) -> tuple:
    """The chunks cut into runs at random, each run taken in one go; with
    ``text_runs``, plain runs come as TextRun events (expanded here)."""
    shaper = shaper_for(tools, citations)
    shaper.text_runs = text_runs
    events: list[TurnEvent] = []
    at = 0
    while at < len(texts):
        size = rnd.randint(1, 12)
        for event in shaper.on_answers(texts[at:at + size]):
            if type(event) is TextRun:
                assert text_runs and event.texts and all(event.texts)
                events += event.deltas()
            else:
                events.append(event)
        at += size
    return finish(shaper, events)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.booleans(),
       st.sampled_from(["raw", "markdown", "strip"]), st.randoms(use_true_random=False))
def test_runs_shape_exactly_as_single_chunks(texts, tools, citations, rnd):
    assert in_runs(texts, tools, citations, rnd) == one_by_one(texts, tools, citations)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.booleans(),
       st.sampled_from(["raw", "markdown", "strip"]), st.randoms(use_true_random=False))
def test_text_runs_stand_for_their_deltas(texts, tools, citations, rnd):
    assert (in_runs(texts, tools, citations, rnd, text_runs=True)
            == one_by_one(texts, tools, citations))


def test_a_plain_run_is_one_text_run() -> None:
    shaper = shaper_for(False, "raw")
    shaper.text_runs = True
    assert shaper.on_answers(["Hello", "", " world"]) == [TextRun(["Hello", " world"])]
    assert shaper.on_answers(["", ""]) == []
    assert shaper.emitted == 2


def test_plain_runs_take_the_one_go_path_and_count_exactly():
    texts = ["ab"] * 3000 + [" and", " some", " words", ".\n"] * 50
    shaper = shaper_for(False, "raw")
    events = shaper.on_answers(texts)
    assert [e.text for e in events] == [t for t in texts if t]
    assert shaper.completion_tokens == one_by_one(texts, False, "raw")[3]

