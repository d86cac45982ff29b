"""Spec §10 cases 47–59: fenced examples never run; mentions in prose stay prose."""

from __future__ import annotations

import pytest
from test_toolcall_harness import (
    assert_unchanged,
    block,
    fed_texts,
    invoke,
    outcome_of,
    outcomes,
    stream_events,
)

from ds2proxy.canonical import TextDelta, ToolCallStart

READ = block(invoke("read_file", ("path", "README.md")))
READ_DSML = block(invoke("read_file", ("path", "README.md"), dsml=True), dsml=True)
GIT_STATUS = block(invoke("Bash", ("command", "git status"), dsml=True), dsml=True)


def test_47_fenced_example_is_text_unchanged() -> None:
    text = f"Here is an example:\n```xml\n{READ}\n```\nDo not execute it."
    assert_unchanged(text)


def test_48_fenced_example_then_real_block() -> None:
    prose = f"Like this:\n```xml\n{READ}\n```\nNow for real:\n"
    real = block(invoke("read_file", ("path", "real.txt")))
    result = outcomes(prose + real)
    assert result.calls == (("read_file", '{"path":"real.txt"}', "function"),)
    assert result.text == prose


def test_49_nested_fences_then_real_block() -> None:
    prose = f"````markdown\nOuter\n```xml\n{READ}\n```\nstill outer\n````\n"
    real = block(invoke("read_file", ("path", "last.txt")))
    result = outcomes(prose + real)
    assert result.calls == (("read_file", '{"path":"last.txt"}', "function"),)
    assert result.text == prose


def test_50_tilde_fence() -> None:
    text = f"~~~\n{READ}\n~~~\nAfter the fence."
    assert_unchanged(text)


def test_51_partial_tag_inside_a_fence_is_neither_held_nor_eaten() -> None:
    chunks = ["Example:\n```xml\n<tool_ca",
              'lls><invoke name="read_file"></invoke></tool_calls>\n```\n', "Done."]
    assert fed_texts(chunks) == chunks
    assert_unchanged(chunks)


def test_52_fence_marker_split_from_its_info_string() -> None:
    chunks = ["Look:\n```", f"xml\n{READ}\n```\n", "end"]
    # The marker alone may still open an empty json fence (cleaned away), so it
    # waits for its info string; nothing else is held.
    assert fed_texts(chunks) == ["Look:\n", "```" + chunks[1], "end"]
    assert_unchanged(chunks)


def test_53_fenced_json_example_is_no_call() -> None:
    chunks = ['Here is an example:\n```json\n{"tool_calls":[{"name":"search","input":{"q":"go"}}]}',
              "\n```\nDo not execute it."]
    assert_unchanged(chunks)


def test_54_mentions_before_a_real_block_stay_in_full() -> None:
    summary = "Summary: support canonical <tool_calls> and DSML <|DSML|tool_calls> wrappers.\n\n"
    result = outcomes(summary + GIT_STATUS)
    assert result.calls == (("Bash", '{"command":"git status"}', "function"),)
    assert result.text == summary


def test_55_alias_mentions_mid_sentence_then_a_block() -> None:
    chunks = ["feat: accept <dsml|tool_calls>, ", "<｜tool_calls> and <|tool_", "calls> aliases\n\n",
              GIT_STATUS]
    result = outcomes(chunks)
    assert result.names == ["Bash"]
    assert result.text == "".join(chunks[:3])


def test_56_inline_code_mention_split_across_chunks() -> None:
    chunks = ["审查意见：这里使用了 `<|DSML|tool", "_calls>` 包装，", "格式正确。\n", READ_DSML,
              "\n\n补充"]
    result = outcomes(chunks)
    assert result.names == ["read_file"]
    assert result.text == "审查意见：这里使用了 `<|DSML|tool_calls>` 包装，格式正确。\n\n\n补充"
    events = stream_events(chunks)
    kinds = [type(e) for e in events if isinstance(e, TextDelta | ToolCallStart)]
    assert kinds.index(ToolCallStart) < len(kinds) - 1
    assert isinstance(events[-1], TextDelta) and events[-1].text.endswith("补充")


def test_57_review_with_mentions_and_two_calls() -> None:
    commit = "git commit -m \"$(cat <<'EOF'\nAccept <tool_calls> aliases\nEOF\n)\""
    review = "The <|tool_calls> alias and `<invoke>` mentions are fine.\n"
    text = review + block(invoke("Bash", ("command", "git add ds2proxy/"), dsml=True),
                          invoke("Bash", ("command", commit), dsml=True), dsml=True)
    result = outcomes(text)
    assert [c[0] for c in result.calls] == ["Bash", "Bash"]
    assert "git add" not in result.text
    assert result.text == review


def test_58_inline_invoke_mention_is_released_at_once() -> None:
    text = 'Use `<invoke name="read_file">` as plain documentation text.'
    assert fed_texts([text]) == [text]
    assert outcomes(text).text == text


def test_59_bare_invoke_followed_by_prose_is_released_when_decided() -> None:
    chunks = ['Example: <invoke name="read_file"><parameter name="path">README.md</parameter>',
              "</invoke> then continue."]
    assert "".join(fed_texts(chunks)) == "".join(chunks)
    result = outcome_of(stream_events(chunks))
    assert result.calls == ()
    assert result.text == "".join(chunks)
    assert outcomes(chunks) == result


@pytest.mark.parametrize("prefix", ["> ", ">", "> > ", "  > "])
@pytest.mark.parametrize("example", [[READ.replace("\n", "")], ["<tool_calls>", invoke(
    "read_file", ("path", "README.md")), "</tool_calls>"]], ids=["one line", "lines"])
def test_a_fenced_example_inside_a_blockquote_is_text(prefix: str, example: list[str]) -> None:
    """A quoted code block showing a call ran as a real call."""
    lines = ["```xml", *example, "```"]
    quoted = "".join(f"{prefix}{line}\n" for line in lines)
    assert_unchanged(f"Example:\n{quoted}Do not run it.")
    real = block(invoke("read_file", ("path", "real.txt")))
    result = outcomes(f"Example:\n{quoted}\n{real}")
    assert result.calls == (("read_file", '{"path":"real.txt"}', "function"),)


def test_a_quoted_example_missing_a_quote_marker_still_never_runs() -> None:
    """CommonMark would end the quote (and the fence) at the unquoted line;
    an example is never run, so the fence lasts to its quoted closer."""
    text = f"> ```xml\n> <tool_calls>\n{invoke('read_file', ('path', 'a'))}\n> </tool_calls>\n> ```\n"
    assert_unchanged(text)


@pytest.mark.parametrize("marker", ["- ", "* ", "+ ", "1. ", "12) ", "> - "])
def test_a_fence_opened_on_a_list_item_line_is_text(marker: str) -> None:
    pad = " " * len(marker)
    text = f"{marker}```xml\n{pad}{READ}\n{pad}```\nAfter."
    assert_unchanged(text)


@pytest.mark.parametrize("line", ["-```xml", "**bold** ```xml", "1 ```xml", "> > x ```"])
def test_backticks_after_other_text_open_no_fence(line: str) -> None:
    result = outcomes(f"{line}\n{READ}")
    assert result.names == ["read_file"]


@pytest.mark.parametrize("line", ["```js``` is inline code", "```a`", "``` x ` y"])
def test_backticks_in_an_info_string_make_no_fence(line: str) -> None:
    """CommonMark: a backtick fence's info string holds no backtick, so such a
    line is inline code; it opened a fence that hid every later real block."""
    result = outcomes(f"{line}\n{READ}")
    assert result.names == ["read_file"]
    assert result.text == f"{line}\n"


def test_a_tilde_fence_info_string_may_hold_backticks() -> None:
    assert_unchanged(f"~~~a`b\n{READ}\n~~~\n")
