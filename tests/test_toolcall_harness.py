"""Shared drivers for the tool-call tests, and checks of the drivers themselves.

``outcomes`` runs one model text through the non-stream parser and through
the streaming sieve cut at every position (or at many positions, for long
texts) and one character at a time; the tests then assert one expected
result for all of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from toolcall_oracle import parse_turn

from ds2proxy.canonical import (
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
    ToolSpec,
)
from ds2proxy.toolcall import ToolSieve
from ds2proxy.toolcall.schema import compact_json


def _schema(**props: str) -> dict[str, object]:
    return {"type": "object", "properties": {k: {"type": v} for k, v in props.items()}}


TOOLS = [
    ToolSpec("Bash", "Run a shell command", _schema(command="string", description="string")),
    ToolSpec("read_file", "Read a file", _schema(path="string")),
    ToolSpec("Read", "Read a file", _schema(file_path="string")),
    ToolSpec("search", "Search", _schema(q="string")),
    ToolSpec("search_web", "Search the web", _schema(query="string")),
    ToolSpec("eval_javascript", "Run JS", _schema(code="string")),
    ToolSpec("Write", "Write a file", _schema(file_path="string", content="string")),
    ToolSpec("write_file", "Write a file", _schema(path="string", content="string")),
    ToolSpec("execute_command", "Run a command", _schema(command="string")),
    ToolSpec("update_todo_list"),
    ToolSpec("noop"),
    ToolSpec("probe"),
    ToolSpec("attempt_completion"),
    ToolSpec("apply_patch", "Patch files", kind="custom"),
]
AUTO = ToolChoice()


@dataclass(frozen=True)
class Outcome:
    """What a client would receive: visible text and (name, arguments, kind) calls."""

    text: str
    calls: tuple[tuple[str, str, str], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def args(self, i: int = 0) -> str:
        return self.calls[i][1]


def ids() -> Iterator[str]:
    return (f"call_{n:032x}" for n in itertools.count())


def stream_events(chunks: list[str], tools: list[ToolSpec] = TOOLS, choice: ToolChoice = AUTO,
                  *, early_emit: str = "high", single_call: bool = False,
                  reasoning: str = "") -> list[object]:
    counter = ids()
    sieve = ToolSieve(tools, choice, early_emit=early_emit, single_call=single_call,
                      new_call_id=lambda: next(counter))
    events: list[object] = []
    for chunk in chunks:
        events += sieve.feed(chunk)
    events += sieve.flush()
    events += sieve.finish(reasoning)
    return events


def first_call_offset(text: str, tools: list[ToolSpec] = TOOLS, choice: ToolChoice = AUTO, *,
                      early_emit: str = "high") -> int | None:
    """How many characters, fed one by one, it took until a call event came
    out of ``feed`` (None: not before the end of the stream)."""
    sieve = ToolSieve(tools, choice, early_emit=early_emit)
    for n, ch in enumerate(text, 1):
        if any(not isinstance(e, TextDelta) for e in sieve.feed(ch)):
            return n
    return None


def fed_texts(chunks: list[str], tools: list[ToolSpec] = TOOLS, choice: ToolChoice = AUTO, *,
              early_emit: str = "high") -> list[str]:
    """The text each ``feed`` call returned, chunk by chunk (no flush)."""
    sieve = ToolSieve(tools, choice, early_emit=early_emit)
    return ["".join(e.text for e in sieve.feed(c) if isinstance(e, TextDelta)) for c in chunks]


def outcome_of(events: list[object]) -> Outcome:
    """Fold events into an Outcome, checking they are well-formed on the way."""
    check_well_formed(events)
    starts = {e.index: e for e in events if isinstance(e, ToolCallStart)}
    calls = tuple((starts[e.index].name, e.arguments, starts[e.index].kind)
                  for e in events if isinstance(e, ToolCallArgs))
    return Outcome("".join(e.text for e in events if isinstance(e, TextDelta)), calls)


def check_well_formed(events: list[object]) -> None:
    """Each call: start, arguments, end, in that order; indexes 0, 1, …; ids distinct."""
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [s.index for s in starts] == list(range(len(starts)))
    assert len({s.id for s in starts}) == len(starts)
    for start in starts:
        own = [e for e in events if isinstance(e, ToolCallStart | ToolCallArgs | ToolCallEnd)
               and e.index == start.index]
        assert [type(e) for e in own] == [ToolCallStart, ToolCallArgs, ToolCallEnd]


def parsed(text: str, tools: list[ToolSpec] = TOOLS, choice: ToolChoice = AUTO, *,
           reasoning: str = "", single_call: bool = False) -> Outcome:
    counter = ids()
    turn = parse_turn(text, tools, choice, reasoning=reasoning, single_call=single_call,
                      new_call_id=lambda: next(counter))
    calls = tuple(
        (c.name, c.arguments if c.kind == "custom" else compact_json(c.arguments), c.kind)
        for c in turn.calls
    )
    return Outcome(turn.visible_text, calls)


def cut(text: str, points: list[int]) -> list[str]:
    """``text`` cut at the given points (taken modulo its length)."""
    edges = sorted({0, len(text), *(p % (len(text) + 1) for p in points)})
    return [text[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def splits(text: str, limit: int = 300) -> Iterator[list[str]]:
    """The text whole, cut once at every position (every n-th for long
    texts), and one character per chunk."""
    yield [text]
    step = 1 if len(text) <= limit else len(text) // limit + 1
    for cut in range(1, len(text), step):
        yield [text[:cut], text[cut:]]
    yield list(text)


def outcomes(chunks: str | list[str], tools: list[ToolSpec] = TOOLS, choice: ToolChoice = AUTO,
             *, early_emit: str = "high", single_call: bool = False,
             reasoning: str = "") -> Outcome:
    """The one outcome shared by non-stream and every way of streaming the
    text (the given chunks too); fails if any of them differs."""
    given = [chunks] if isinstance(chunks, str) else chunks
    text = "".join(given)
    options = {"early_emit": early_emit, "single_call": single_call, "reasoning": reasoning}
    expected = outcome_of(stream_events(given, tools, choice, **options))
    for cut in splits(text):
        got = outcome_of(stream_events(cut, tools, choice, **options))
        assert got == expected, f"chunks {cut!r}"
    if early_emit != "low":
        assert parsed(text, tools, choice, reasoning=reasoning, single_call=single_call) == expected
    return expected


def assert_unchanged(chunks: str | list[str], **options: object) -> None:
    """No call, and the text shown exactly as written, however it is streamed."""
    result = outcomes(chunks, **options)  # type: ignore[arg-type]
    assert result.calls == ()
    assert result.text == "".join(chunks)


def block(*invokes: str, dsml: bool = False) -> str:
    """A wrapper around the given invokes."""
    prefix = "|DSML|" if dsml else ""
    return f"<{prefix}tool_calls>\n" + "\n".join(invokes) + f"\n</{prefix}tool_calls>"


def invoke(name: str, *params: tuple[str, str], cdata: bool = True, dsml: bool = False) -> str:
    prefix = "|DSML|" if dsml else ""
    body = "".join(
        f'<{prefix}parameter name="{k}">' + (f"<![CDATA[{v}]]>" if cdata else v)
        + f"</{prefix}parameter>"
        for k, v in params
    )
    return f'<{prefix}invoke name="{name}">{body}</{prefix}invoke>'


# -- the drivers themselves ---------------------------------------------------


def test_splits_cover_every_cut_of_a_short_text() -> None:
    cuts = list(splits("abcd"))
    assert cuts[0] == ["abcd"]
    assert [c[0] for c in cuts[1:-1]] == ["a", "ab", "abc"]
    assert cuts[-1] == ["a", "b", "c", "d"]
    assert all("".join(c) == "abcd" for c in cuts)


def test_splits_of_a_long_text_stay_bounded() -> None:
    text = "x" * 5000
    cuts = list(splits(text))
    assert 250 < len(cuts) < 320
    assert all("".join(c) == text for c in cuts)


def test_outcome_rejects_a_call_without_its_end() -> None:
    with pytest.raises(AssertionError):
        outcome_of([ToolCallStart(0, "call_a", "noop"), ToolCallArgs(0, "{}")])


def test_helpers_build_a_plain_block() -> None:
    assert block(invoke("noop")) == '<tool_calls>\n<invoke name="noop"></invoke>\n</tool_calls>'
    assert invoke("Bash", ("command", "pwd"), dsml=True) == (
        '<|DSML|invoke name="Bash"><|DSML|parameter name="command"><![CDATA[pwd]]>'
        "</|DSML|parameter></|DSML|invoke>"
    )
