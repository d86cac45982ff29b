"""Properties of the sieve over generated texts.

- however a model text is cut into chunks, the stream equals the non-stream
  result (text and calls);
- random mixes of prose and tag fragments never raise, and every character
  is reported exactly once, as shown text or as a consumed block;
- text that cannot start a tag is released by the very ``feed`` that got it.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_toolcall_harness import (
    AUTO,
    TOOLS,
    block,
    cut,
    invoke,
    outcome_of,
    parsed,
    stream_events,
)

from ds2proxy.canonical import TextDelta
from ds2proxy.toolcall import ToolSieve
from ds2proxy.toolcall.invoke import CallBuilder
from ds2proxy.toolcall.segmenter import Consumed, RawText, Segmenter

FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PROSE = st.sampled_from([
    "Let me look.\n", "Done. ", "a < b > c ", "你好，", "see `<tool_calls>` here ",
    "use <invoke name=\"read_file\"> like that. ", "</tool_calls>\n", "\n\n", "x",
    "Summary: <|DSML|tool_calls> wrappers.\n", "```\n", "[x] item\n", "<b>bold</b> ",
])
CALLS = st.sampled_from([
    block(invoke("read_file", ("path", "README.md"))),
    block(invoke("Bash", ("command", "echo 'a]]>b' && ls"), dsml=True), dsml=True),
    block(invoke("search", ("q", "go"), cdata=False), invoke("search_web", ("query", "q"))),
    block(invoke("Write", ("file_path", "a.md"), ("content", "```xml\n<tool_calls>\n```\n"))),
    block(invoke("noop")),
    block(invoke("undeclared", ("a", "b"))),
    '<invoke name="read_file"><parameter name="path">x</parameter></invoke>\n</tool_calls>',
    '<tool_calls><invoke name="Write"><parameter name="content"><![CDATA[unclosed',
])
FENCED = CALLS.map(lambda c: f"```xml\n{c}\n```\n")
MODEL_TEXT = st.lists(st.one_of(PROSE, CALLS, FENCED), min_size=1, max_size=6).map("".join)


@FAST
@given(MODEL_TEXT, st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_stream_equals_non_stream_for_any_chunking(text: str, points: list[int]) -> None:
    streamed = outcome_of(stream_events(cut(text, points)))
    assert streamed == parsed(text)


@FAST
@given(MODEL_TEXT, st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_early_emission_changes_timing_not_results(text: str, points: list[int]) -> None:
    chunks = cut(text, points)
    high = outcome_of(stream_events(chunks, early_emit="high"))
    assert outcome_of(stream_events(chunks, early_emit="off")) == high


FRAGMENTS = st.sampled_from([
    "<", ">", "</", "<tool_calls>", "</tool_calls>", '<invoke name="read_file">', "</invoke>",
    '<parameter name="path">', "</parameter>", "<![CDATA[", "]]>", "```", "~~~", "\n", " ",
    "<|DSML|", "｜", "|", "<!--", "-->", "<think>", "{", "[", "invoke", "tool_calls", '"',
    '<invoke name="Bash">', '<parameter name="command">', "<<", "/>",
])
NOISE = st.lists(st.one_of(FRAGMENTS, st.text(string.ascii_letters + " \n<>|/", max_size=4)),
                 max_size=30).map("".join)


def segments(chunks: list[str], mode: str) -> list[object]:
    segmenter = Segmenter(CallBuilder(TOOLS, AUTO), early_emit=mode,  # type: ignore[arg-type]
                          single_call=False, new_call_id=lambda: "call_x")
    events: list[object] = []
    for chunk in chunks:
        events += segmenter.feed(chunk)
    return events + segmenter.flush()


@FAST
@given(NOISE, st.lists(st.integers(min_value=0, max_value=500), max_size=6),
       st.sampled_from(["high", "low", "off"]))
def test_fuzz_every_character_is_reported_exactly_once(text: str, points: list[int],
                                                       mode: str) -> None:
    events = segments(cut(text, points), mode)
    accounted = "".join(e.text for e in events if isinstance(e, RawText | Consumed))
    assert accounted == text
    if "invoke" not in text.lower():
        assert all(isinstance(e, RawText) for e in events)


@FAST
@given(NOISE, st.lists(st.integers(min_value=0, max_value=500), max_size=6))
def test_fuzz_public_sieve_never_raises_and_agrees(text: str, points: list[int]) -> None:
    assert outcome_of(stream_events(cut(text, points))) == parsed(text)


SAFE = st.text(alphabet=st.characters(blacklist_characters="<`[", blacklist_categories=["Cs"]),
               min_size=1, max_size=20)


@FAST
@given(st.lists(SAFE, min_size=1, max_size=10))
def test_text_that_cannot_start_a_tag_is_released_immediately(chunks: list[str]) -> None:
    sieve = ToolSieve(TOOLS, AUTO)
    for chunk in chunks:
        assert sieve.feed(chunk) == [TextDelta(chunk)]
    assert sieve.flush() == []
