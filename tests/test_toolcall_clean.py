"""§4.9 cleaning of visible text, whole and streamed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_toolcall_harness import cut, splits
from toolcall_oracle import clean_visible_text

from ds2proxy.toolcall import TextCleaner


def streamed(chunks: list[str]) -> str:
    cleaner = TextCleaner()
    return "".join(cleaner.feed(c) for c in chunks) + cleaner.flush()


def clean_everywhere(text: str) -> str:
    """The cleaned text, checked to be the same however the text is cut."""
    expected = clean_visible_text(text)
    for chunks in splits(text):
        assert streamed(chunks) == expected, chunks
    return expected


@pytest.mark.parametrize("token", [
    "<｜end▁of▁sentence｜>", "<|end_of_sentence|>", "<｜Assistant｜>", "<|Tool|>",
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁thinking｜>", "<| end_of_toolresults |>",
    "<｜end▁of▁instructions｜>", "<｜end_of▁sentence|>",
])
def test_template_tokens_are_removed(token: str) -> None:
    assert clean_everywhere(f"Hello{token} world") == "Hello world"


def test_other_bar_markup_stays() -> None:
    text = "<|User|> and <|DSML|x> and <｜end▁of▁line｜> stay"
    assert clean_everywhere(text) == text


def test_think_tags_go_and_an_unclosed_one_cuts() -> None:
    assert clean_everywhere("a<think>b</think>c") == "abc"
    assert clean_everywhere("stray </think>end") == "stray end"
    assert clean_everywhere("answer<think>leaked reasoning") == "answer"


def test_empty_json_fence_goes_and_a_full_one_stays() -> None:
    assert clean_everywhere("Done.\n```json\n```\n") == "Done.\n\n"
    full = 'Here:\n```json\n{"a": 1}\n```\n'
    assert clean_everywhere(full) == full


def test_leaked_wire_array_goes() -> None:
    wire = ('[{"function":{"arguments":"{\\"q\\":\\"x\\"}","name":"search"},'
            '"id":"call_abc","type":"function"}]')
    assert clean_everywhere(f"Before {wire} after") == "Before  after"
    other = '[{"function": "not a call"}] and [1, 2]'
    assert clean_everywhere(other) == other


def test_leaked_tool_result_blob_goes_with_its_marker() -> None:
    text = 'ok <|Tool|>{"content":"18C","tool_call_id":"call_1"} done'
    assert clean_everywhere(text) == "ok  done"
    assert clean_everywhere('<|Tool|>{"x":1}') == '{"x":1}'


def test_agent_wrappers_keep_their_text() -> None:
    text = ("Done with task.\n<attempt_completion>\n  <result>Here is the answer</result>\n"
            "</attempt_completion>")
    assert clean_everywhere(text) == "Done with task.\n\n  Here is the answer\n"
    ask = "<ask_followup_question>Which file?</ask_followup_question>"
    assert clean_everywhere(ask) == "Which file?"


def test_lone_result_example_stays() -> None:
    text = "Return it as <result>value</result> please."
    assert clean_everywhere(text) == text


def test_text_without_markup_starts_is_released_at_once() -> None:
    cleaner = TextCleaner()
    for chunk in ["Hello, ", "world. ", "No markup here: a > b, c | d.\n", "你好"]:
        assert cleaner.feed(chunk) == chunk
    assert cleaner.flush() == ""


def test_only_a_possible_token_start_is_held() -> None:
    cleaner = TextCleaner()
    assert cleaner.feed("Hi <｜end▁of") == "Hi "
    assert cleaner.feed("▁sentence｜> there") == " there"
    assert cleaner.feed("a <b") == "a <b"
    assert cleaner.flush() == ""


CLEANER_FRAGMENTS = st.sampled_from([
    "<｜end▁of▁sentence｜>", "<|Assistant|>", "<｜", "▁of", "|>", "<think>", "</think>", "<",
    "```json", "```", "\n", " ", "[", '{"function":{}', ',"id":"call_1","type":"function"}]',
    "<|Tool|>", '{"tool_call_id":"call_2"}', "<attempt_completion>", "</attempt_completion>",
    "<result>", "</result>", "text", "]", "}", "`", "``", "> ", "- ",
])


@settings(max_examples=250, deadline=None)
@given(st.lists(CLEANER_FRAGMENTS, max_size=25).map("".join),
       st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_cleaning_does_not_depend_on_chunking(text: str, points: list[int]) -> None:
    assert streamed(cut(text, points)) == clean_visible_text(text)


def lines_run(text: str) -> int:
    """Lines of the cleaning code run to clean ``text`` fed 3 characters at a
    time: a measure of work that does not depend on the machine."""
    import sys
    from pathlib import Path

    import ds2proxy.toolcall

    package = str(Path(ds2proxy.toolcall.__file__).parent)
    count = 0

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal count
        if not frame.f_code.co_filename.startswith(package):
            return None
        if event == "line":
            count += 1
        return tracer

    cleaner = TextCleaner()
    sys.settrace(tracer)
    try:
        for at in range(0, len(text), 3):
            cleaner.feed(text[at:at + 3])
        cleaner.flush()
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("piece", ['[{"function":', '<|Tool|>{"a":', "<think>\nstill thinking "])
def test_a_held_tail_is_read_once_as_it_grows(piece: str) -> None:
    """A tail held while a rule waits for its end (an unclosed leaked call
    array or tool-result object, an unclosed think tag) costs work in
    proportion to its length: it was read whole again with every chunk, and
    at the end once per opener in it, so 100 KB of them took minutes."""
    small, large = lines_run(piece * 60), lines_run(piece * 240)
    assert large < 6 * small


WIRE = '[{"function":{"name":"f","arguments":"{}"},"id":"call_1","type":"function"}]'


@pytest.mark.parametrize("text", [
    'Strip them:\n```python\nif "<think>" in reply:\n    reply = reply.split("</think>")[-1]\n```\nMore.',
    'Set it:\n```python\nopen_tag = "<think>"\n```\nThe rest of a long answer.',
    "Inline: the `<think>` tag opens reasoning; the rest stays.",
    "Double ``<think>`` ticks, then ``</think>`` and more.",
    f"The wire shape:\n```json\n{WIRE}\n```\nThat is all.",
    "> ```xml\n> <attempt_completion><result>x</result></attempt_completion>\n> ```\nafter",
    "- ```\n  <think>\n  ```\nafter",
])
def test_code_is_content_not_a_leak(text: str) -> None:
    """A ``<think>`` in a code example was taken for leaked reasoning and cut
    the rest of the answer; a tool-call array shown in a fence was deleted."""
    assert clean_everywhere(text) == text


def test_leaks_outside_code_still_go_and_tokens_go_everywhere() -> None:
    assert clean_everywhere("`x` <think>hidden") == "`x` "
    assert clean_everywhere("```\ncode\n```\n<think>a</think>b" + WIRE) == "```\ncode\n```\nab"
    assert clean_everywhere("```\nx<｜end▁of▁sentence｜>\n```") == "```\nx\n```"
    assert clean_everywhere("an `unclosed span\n<think>gone") == "an `unclosed span\n"
