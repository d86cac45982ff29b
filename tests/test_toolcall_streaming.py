"""Spec §10 cases 60–76: streaming mechanics — holding, releasing, ordering."""

from __future__ import annotations

import json

import pytest
from test_toolcall_harness import (
    AUTO,
    TOOLS,
    assert_unchanged,
    block,
    fed_texts,
    invoke,
    outcome_of,
    outcomes,
    stream_events,
)

from ds2proxy.canonical import TextDelta, ToolCallArgs, ToolCallEnd, ToolCallStart
from ds2proxy.toolcall import ToolSieve

READ = block(invoke("read_file", ("path", "README.md")))


def kinds(events: list[object]) -> list[str]:
    """The wire order: "text" and "call" (one per call start)."""
    return [("text" if isinstance(e, TextDelta) else "call") for e in events
            if isinstance(e, TextDelta | ToolCallStart)]


def assert_no_raw_syntax(text: str) -> None:
    for leak in ("<invoke", "tool_calls>", "read_file", "parameter"):
        assert leak not in text


def test_60_token_by_token_block() -> None:
    chunks = ["<", "tool", "_ca", "lls", ">\n", "  <in", "voke", ' name="read', '_file">',
              '<parameter name="path">', "README", ".md", "</parameter>", "</invoke>\n", "</",
              "tool_calls", ">"]
    result = outcomes(chunks)
    assert result.calls == (("read_file", '{"path":"README.md"}', "function"),)
    assert_no_raw_syntax(result.text)


def test_61_one_character_per_chunk() -> None:
    result = outcome_of(stream_events(list(READ)))
    assert result.names == ["read_file"]
    assert result.text == ""


def test_62_partial_tag_is_held_and_comparison_is_not() -> None:
    assert fed_texts(["Hello <too"]) == ["Hello "]
    assert fed_texts(["a < b > c"]) == ["a < b > c"]


def test_63_sentence_streams_before_the_call() -> None:
    chunks = ["Let me check the file.\n", READ]
    assert fed_texts(chunks)[0] == chunks[0]
    events = stream_events(chunks)
    assert kinds(events) == ["text", "call"]
    assert_no_raw_syntax(outcome_of(events).text)


def test_64_wrapper_then_blanks_releases_nothing() -> None:
    first = "<tool_calls>\n  "
    assert fed_texts([first]) == [""]
    rest = READ[len("<tool_calls>\n"):]
    result = outcomes([first, rest.lstrip(" ")])
    assert result.names == ["read_file"]
    assert result.text == ""


@pytest.mark.parametrize("mode", ["high", "off"])
def test_65_unfinished_block_is_released_verbatim(mode: str) -> None:
    chunks = ["<tool_calls>\n", '  <invoke name="read_file">\n']
    assert_unchanged(chunks, early_emit=mode)


def test_65_under_low_the_started_call_completes_empty() -> None:
    chunks = ["<tool_calls>\n", '  <invoke name="read_file">\n']
    result = outcomes(chunks, early_emit="low")
    assert result.calls == (("read_file", "{}", "function"),)
    assert result.text == ""


@pytest.mark.parametrize("mode", ["high", "off"])
def test_66_no_closing_tags_at_all_is_released(mode: str) -> None:
    chunks = ["<tool_calls>", '<invoke name="read_file">', '<parameter name="path">README.md</parameter>']
    assert_unchanged(chunks, early_emit=mode)


def test_67_stray_closing_wrapper_is_text() -> None:
    chunks = ["some text\n", "</tool_calls>\n", "more text"]
    assert fed_texts(chunks) == chunks
    assert_unchanged(chunks)


def test_68_other_xml_passes_and_a_block_after_it_is_a_call() -> None:
    plain = "<tool><title>plain xml</title><body>text</body></tool>"
    assert outcomes(plain).text == plain
    prefix = "<tool><title>plain xml</title></tool>"
    result = outcomes(prefix + READ)
    assert result.names == ["read_file"]
    assert result.text == prefix


def test_69_agent_wrapper_is_text_with_its_tags_removed() -> None:
    text = ("Done with task.\n<attempt_completion>\n  <result>Here is the answer</result>\n"
            "</attempt_completion>")
    result = outcomes(text)
    assert result.calls == ()
    assert "Done with task." in result.text and "Here is the answer" in result.text
    assert "attempt_completion" not in result.text and "result>" not in result.text


def test_70_two_blocks_get_distinct_ids_and_consecutive_indexes() -> None:
    a = block(invoke("read_file", ("path", "a.txt")))
    b = block(invoke("read_file", ("path", "b.txt")))
    events = stream_events([a + "\n" + b])
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [s.index for s in starts] == [0, 1]
    assert starts[0].id != starts[1].id
    result = outcomes(a + "\n" + b)
    assert [json.loads(result.args(i))["path"] for i in range(2)] == ["a.txt", "b.txt"]


def test_71_text_and_calls_in_document_order() -> None:
    chunks = ["前置文本\n" + READ, "中间文本\n" + block(invoke("search", ("q", "go")))]
    events = stream_events(chunks)
    assert kinds(events) == ["text", "call", "text", "call"]
    result = outcomes(chunks)
    assert result.text == "前置文本\n中间文本\n"
    assert result.names == ["read_file", "search"]


def test_72_long_cdata_payload_split_across_chunks() -> None:
    payload = "".join(chr(0x61 + i % 26) + ("\n" if i % 80 == 79 else "") for i in range(4096))
    text = block(invoke("Write", ("file_path", "big.txt"), ("content", payload)))
    chunks = [text[i:i + 37] for i in range(0, len(text), 37)]
    result = outcome_of(stream_events(chunks))
    assert json.loads(result.args())["content"] == payload
    assert result.text == ""


def test_73_unfinished_json_call_is_plain_text_without_stall() -> None:
    text = '{"tool_calls":[{"name":"search"'
    assert fed_texts([text]) == [text]
    assert_unchanged(text)


def test_74_plain_text_streams_as_it_comes() -> None:
    chunks = ["你好，", "这是普通文本回复。"]
    assert fed_texts(chunks) == chunks
    events = stream_events(chunks)
    assert all(isinstance(e, TextDelta) for e in events)


def test_75_two_invokes_split_mid_block_stay_separate() -> None:
    first = invoke("search_web", ("query", "go"))
    second = invoke("eval_javascript", ("code", "1+1"))
    text = block(first, second)
    cut = text.index(second) + 5
    result = outcomes([text[:cut], text[cut:]])
    assert result.names == ["search_web", "eval_javascript"]
    assert [json.loads(result.args(i)) for i in range(2)] == [{"query": "go"}, {"code": "1+1"}]


def test_76_low_mode_starts_at_the_invoke_tag_and_never_repeats_it() -> None:
    sieve = ToolSieve(TOOLS, AUTO, early_emit="low", new_call_id=lambda: "call_" + "0" * 32)
    opened = sieve.feed('<tool_calls>\n<invoke name="read_file">')
    assert opened == [ToolCallStart(0, "call_" + "0" * 32, "read_file")]
    closed = sieve.feed('<parameter name="path">a</parameter></invoke>\n</tool_calls>')
    assert closed == [ToolCallArgs(0, '{"path":"a"}'), ToolCallEnd(0)]
    assert sieve.flush() == []


@pytest.mark.parametrize("mode", ["high", "off", "low"])
def test_unclosed_cdata_after_an_emitted_call_is_repaired_in_every_mode(mode: str) -> None:
    text = '<tool_calls><invoke name="noop"></invoke><![CDATA[x</tool_calls>after'
    result = outcomes(text, early_emit=mode)
    assert result.calls == (("noop", "{}", "function"),)
    assert result.text == "after"


def test_markdown_with_inline_code_and_links_streams_at_once() -> None:
    chunks = ["Use `pip install x` and ", "see [the docs](https://x.y/z) ", "or a<3 b>2.\n"]
    assert fed_texts(chunks) == chunks


def test_one_feed_gives_one_text_event_even_around_a_mention() -> None:
    events = stream_events(["Wrap it in <tool_calls> then stop."])
    assert events == [TextDelta("Wrap it in <tool_calls> then stop.")]


def tag_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts how often a block's tags are looked at (one entry per look)."""
    from ds2proxy.toolcall import capture

    seen: list[int] = []
    step = capture._invoke_step

    def counted(tag):  # type: ignore[no-untyped-def]
        seen.append(1)
        return step(tag)

    monkeypatch.setattr(capture, "_invoke_step", counted)
    return seen


@pytest.mark.parametrize("wrapped", [True, False])
def test_a_long_block_is_read_once_not_once_per_chunk(monkeypatch, wrapped: bool) -> None:
    """Each tag of a block still being written is read once: every chunk used
    to read all the tags seen so far again, so a block of many parameters
    (a model repeating itself) held the event loop for minutes."""
    seen = tag_reads(monkeypatch)
    params = '<parameter name="q">go</parameter>\n' * 300
    text = ('<tool_calls>\n' if wrapped else "") + '<invoke name="search">\n' + params
    sieve = ToolSieve(TOOLS, AUTO)
    for at in range(0, len(text), 3):
        assert sieve.feed(text[at:at + 3]) == []
    assert len(seen) < 2 * 600


@pytest.mark.parametrize(("run", "held"), [("<" * 1000, 17), ("<" + " " * 1000, 0),
                                           ("<|" + "|" * 1000, 0)])
def test_a_long_run_of_stray_markup_is_not_held(run: str, held: int) -> None:
    """A run of "<" or of tag-prefix noise longer than any tag's is released
    as it comes (all but the "<"s a tag could still follow, and the one the
    cleaner keeps for a special token): it was held, and looked through
    again with every chunk, until the stream ended."""
    chunks = ["a", *(run[i:i + 3] for i in range(0, len(run), 3))]
    assert "".join(fed_texts(chunks)) == "a" + run[:len(run) - held]
    result = outcomes("a" + run + READ)
    assert result.names == ["read_file"]


def test_a_long_comment_inside_a_block_streams_to_one_call() -> None:
    """A comment inside a block is an ignored region (§3.1) however it is cut;
    its end is searched from where the last chunk's search stopped (the whole
    comment was searched again for every chunk)."""
    content = "x" * 20_000
    text = (f'<tool_calls><invoke name="Write"><parameter name="content"><!-- {content} -->'
            '</parameter><!-- </invoke> --><parameter name="file_path">a</parameter>'
            "</invoke></tool_calls>")
    for size in (7, 1000):
        chunks = [text[i:i + size] for i in range(0, len(text), size)]
        result = outcome_of(stream_events(chunks))
        assert result.names == ["Write"] and result.text == ""
        assert json.loads(result.args()) == {"content": f"<!-- {content} -->", "file_path": "a"}
