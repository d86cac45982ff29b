"""Spec §10 cases 77–86: reasoning-channel calls, tool_choice outcomes, endings.

Dialect rendering (422 frames, Claude blocks, Responses items) is the
plugins' job; here the canonical facts they render from are pinned: which
calls exist, the visible text, and whether tool_choice was violated.
"""

from __future__ import annotations

import json

import pytest
from test_toolcall_harness import AUTO, TOOLS, block, invoke, outcomes, parsed, stream_events
from toolcall_oracle import parse_turn

from ds2proxy.canonical import TextDelta, ToolCallArgs, ToolCallStart, ToolChoice
from ds2proxy.toolcall import ToolSieve

READ = block(invoke("read_file", ("path", "README.md")), dsml=False)
REQUIRED = ToolChoice("required")


def sieve_after(text: str, choice: ToolChoice = AUTO, reasoning: str = "") -> ToolSieve:
    sieve = ToolSieve(TOOLS, choice)
    sieve.feed(text)
    sieve.flush()
    sieve.finish(reasoning)
    return sieve


def test_77_calls_in_reasoning_with_blank_answer_are_the_turn_calls() -> None:
    result = outcomes(" \n", reasoning="I should read it.\n" + READ)
    assert result.calls == (("read_file", '{"path":"README.md"}', "function"),)
    events = stream_events([" \n"], reasoning=READ)
    assert not any(isinstance(e, TextDelta) and "README" in e.text for e in events)
    assert sieve_after("", reasoning=READ).calls == 1


def test_78_calls_in_reasoning_are_ignored_when_the_answer_has_text() -> None:
    result = outcomes("normal answer", reasoning=READ)
    assert result.calls == ()
    assert result.text == "normal answer"


def test_79_required_choice_without_a_call_is_a_violation() -> None:
    sieve = sieve_after("plain text only", REQUIRED)
    assert sieve.violation()
    assert sieve.calls == 0
    assert not sieve_after(READ, REQUIRED).violation()


def test_80_required_choice_with_call_only_in_reasoning_and_text_is_a_violation() -> None:
    sieve = sieve_after("some visible text", REQUIRED, reasoning=READ)
    assert sieve.violation()


def test_81_choice_none_suppresses_a_block_entirely() -> None:
    text = "Sure.\n" + READ
    result = outcomes(text, choice=ToolChoice("none"))
    assert result.calls == ()
    assert result.text == "Sure.\n"
    assert not sieve_after(text, ToolChoice("none")).violation()


def test_82_forced_undeclared_tool_is_refused_at_request_time() -> None:
    from ds2proxy.errors import InvalidRequest
    from ds2proxy.dialects.tool_choice import parse_openai_tool_choice

    with pytest.raises(InvalidRequest) as caught:
        parse_openai_tool_choice({"type": "function", "name": "write"}, TOOLS)
    assert caught.value.status == 400
    assert caught.value.param == "tool_choice"


def test_83_plain_text_in_three_chunks_arrives_exactly_once() -> None:
    chunks = ["明白\n\n", "Bash\nIN\n", "pwd\nOUT\nok"]
    events = stream_events(chunks)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "".join(chunks)
    assert outcomes(chunks).text == "".join(chunks)


def test_84_sentence_then_block_gives_text_then_call() -> None:
    text = "I'll call a tool now.\n" + block(invoke("write_file", ("path", "a"), ("content", "b")))
    events = stream_events([text])
    order = [type(e) for e in events if isinstance(e, TextDelta | ToolCallStart)]
    assert order == [TextDelta, ToolCallStart]
    assert outcomes(text).names == ["write_file"]


def test_85_only_a_block_gives_no_text_and_json_object_arguments() -> None:
    turn = parse_turn(READ, TOOLS, AUTO)
    assert turn.visible_text == ""
    assert turn.calls[0].arguments == {"path": "README.md"}
    args = [e for e in stream_events([READ]) if isinstance(e, ToolCallArgs)]
    assert isinstance(json.loads(args[0].arguments), dict)


def test_86_stream_of_only_a_block_has_empty_text_and_one_call() -> None:
    result = outcomes(READ)
    assert result.text == ""
    assert len(result.calls) == 1


def test_forced_choice_accepts_only_that_tool() -> None:
    forced = ToolChoice("forced", name="search")
    text = block(invoke("read_file", ("path", "x")), invoke("search", ("q", "go")))
    result = outcomes(text, choice=forced)
    assert result.names == ["search"]
    assert not sieve_after(text, forced).violation()


def test_single_call_keeps_only_the_first_accepted_call() -> None:
    text = block(invoke("bogus", ("a", "b")), invoke("search", ("q", "1")), invoke("search", ("q", "2")))
    result = outcomes(text, single_call=True)
    assert result.calls == (("search", '{"q":"1"}', "function"),)
    assert parsed(text, single_call=True) == result


def test_custom_tool_gets_its_raw_input() -> None:
    patch = "*** Begin Patch\n*** Update File: a.py\n@@\n-x = 1\n+x = 2\n*** End Patch\n"
    result = outcomes(block(invoke("apply_patch", ("input", patch))))
    assert result.calls == (("apply_patch", patch, "custom"),)
    turn = parse_turn(block(invoke("apply_patch", ("input", patch))), TOOLS, AUTO)
    assert turn.calls[0].arguments == patch
    assert turn.calls[0].kind == "custom"


def test_custom_tool_accepts_its_text_under_another_single_name() -> None:
    result = outcomes(block(invoke("apply_patch", ("content", "diff"))))
    assert result.calls == (("apply_patch", "diff", "custom"),)


def test_no_tools_means_text_passes_and_is_only_cleaned() -> None:
    text = READ + "<｜end▁of▁sentence｜>"
    turn = parse_turn(text, [], AUTO)
    assert turn.calls == []
    assert turn.visible_text == READ
    sieve = ToolSieve([], AUTO)
    assert "".join(e.text for e in sieve.feed(text) + sieve.flush()) == READ
    assert sieve.finish(READ) == []
