"""The parser's token fast path yields exactly what the general path yields.

Every stream is parsed twice, with ``fast_path`` on and off, and the event
lists and end states are compared; each test also checks the fast path really
ran, so a stream that silently bypasses it proves nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from ds2proxy.testing import Scripted, SearchHit
from ds2proxy.testing.recordings import load_rounds
from ds2proxy.testing.reconstruct import Reconstruction, lines_of
from ds2proxy.testing.scripted_stream import TurnContext, render
from ds2proxy.upstream.events import ContentFiltered, StatusChanged, TextChunk
from ds2proxy.upstream.lines import LineCutter
from ds2proxy.upstream.stream_parser import StreamParser

RECORDINGS = [
    "markdown-format-example-20260405-spacefix",
    "longtext-deepseek-v4-flash-20260429",
    "continue-thinking-snapshot-replay-20260405",
    "guangzhou-weather-reasoner-search-20260404",
]
CONTENT = "response/fragments/-1/content"


class CountingParser(StreamParser):
    """Counts the tokens the fast path took, to prove it was exercised."""

    taken = 0

    def _append_to_tail(self, value: Any, out: list) -> bool:
        done = super()._append_to_tail(value, out)
        self.taken += done
        return done


def parse(rounds: Sequence[bytes], *, fast: bool, thinking: bool = True) -> Reconstruction:
    result = Reconstruction(CountingParser(thinking_enabled=thinking, fast_path=fast))
    for body in rounds:
        result.feed_round(body)
    result.finish()  # as read_rounds ends every answer
    return result


def state(result: Reconstruction) -> tuple:
    p = result.parser
    return (p.status, p.ended, p.should_continue, p.auto_continue, p.current_kind,
            p.request_message_id, p.response_message_id, p.upstream_usage, p.tree,
            p.citations(), result.continue_after)


def expanded(events: list) -> list:
    """Runs of answer texts as the TextChunks they stand for."""
    out = []
    for event in events:
        if type(event) is list:
            assert event and all(event)  # a run is never empty, nor holds an empty text
            out += [TextChunk("answer", text) for text in event]
        else:
            out.append(event)
    return out


class RunCountingParser(StreamParser):
    """Counts the tokens taken in runs of lines (one match, one decode)."""

    run_tokens = 0

    def _take_run(self, texts: list[str], tail: Any, out: list) -> bool:
        done = super()._take_run(texts, tail, out)
        self.run_tokens += len(texts) if done else 0
        return done


def parse_reads(rounds: Sequence[bytes], *, thinking: bool, seed: int) -> Reconstruction:
    """As the pipeline reads: bodies cut into reads of random sizes, the
    complete lines of each read fed at once (the inline token path), odd
    seeds with answer tokens handed over in runs, seeds from 4 on with the
    blank lines kept (as a capturing stream reads them)."""
    rng = random.Random(seed)
    result = Reconstruction(RunCountingParser(thinking_enabled=thinking))
    result.parser.answer_runs = seed % 2 == 1
    for body in rounds:
        result.parser.start_round()
        cutter = LineCutter(for_parser=seed < 4)
        at = 0
        while at < len(body):
            step = rng.choice([1, 5, 40, 300, 4096, len(body)])
            result.events += expanded(result.parser.feed_lines(cutter.cut(body[at:at + step])))
            at += step
        result.events += expanded(result.parser.feed_lines(cutter.rest()))
        result.continue_after.append(result.parser.should_continue)
    result.finish()
    return result


def assert_same(rounds: Sequence[bytes], *, thinking: bool = True,
                min_taken: int = 1) -> Reconstruction:
    """Both paths agree on every event and on the end state, line by line
    and read by read; returns the fast run."""
    slow = parse(rounds, fast=False, thinking=thinking)
    fast = parse(rounds, fast=True, thinking=thinking)
    assert slow.parser.taken == 0
    assert fast.events == slow.events
    assert state(fast) == state(slow)
    assert fast.parser.taken >= min_taken
    for seed in range(6):
        batched = parse_reads(rounds, thinking=thinking, seed=seed)
        assert batched.events == slow.events
        assert state(batched) == state(slow)
        assert batched.parser.fast_tokens >= min_taken
        assert batched.parser.run_tokens >= min_taken // 2
    return fast


def body(*frames: Any) -> bytes:
    """An SSE body: dicts become ``data:`` events, strings are raw lines."""
    out = []
    for frame in frames:
        out.append(frame if isinstance(frame, str) else "data: " + orjson.dumps(frame).decode())
    return ("\n".join(out) + "\n").encode()


def opening(*fragments: dict) -> list[dict]:
    return [{"v": {"response": {"message_id": 2, "status": "WIP",
                                "fragments": list(fragments)}}}]


def frag(fid: int, ftype: str, content: Any = "") -> dict:
    return {"id": fid, "type": ftype, "content": content}


FINISHED = {"p": "response/status", "o": "SET", "v": "FINISHED"}


# -- recordings and scripted turns --------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
def test_recordings_parse_identically(fixtures_dir: Path, name: str) -> None:
    rounds = load_rounds(fixtures_dir / "deepseek-sse" / name)
    fast = assert_same(rounds, min_taken=100)
    text_events = sum(isinstance(e, TextChunk) for e in fast.events)
    assert fast.parser.taken >= text_events // 2


@pytest.mark.parametrize("name", RECORDINGS)
def test_recordings_parse_identically_without_thinking(fixtures_dir: Path, name: str) -> None:
    assert_same(load_rounds(fixtures_dir / "deepseek-sse" / name), thinking=False,
                min_taken=100)


def test_spliced_rounds_parse_identically(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "deepseek-sse" / "continue-thinking-snapshot-replay-20260405"
    assert_same([b"".join(load_rounds(folder))], min_taken=100)


SCRIPTS = {
    "plain": Scripted(thinking="Let me think  about it.\n\n", answer="Cats  purr.\n \t"),
    "whitespace": Scripted(answer=[" ", "\n", "\t", "  ", "x", "\r", " "], chunk_size=1),
    "search": Scripted(thinking="Searching.", answer="Paris [reference:0] and [reference:1].",
                       search=[SearchHit("https://a.example/", "A"),
                               SearchHit("https://b.example/", "B")]),
    "continues": Scripted(thinking="t" * 40, answer="answer text " * 8, chunk_size=2,
                          incomplete_after=[10, 30], snapshot_overshoot=5),
    "filtered": Scripted(answer="Some text before the filter", content_filter=True),
    "leak": Scripted(answer=["Fine ", "so ", "far ", "\tCONTENT_FILTER", "hidden", " more"]),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripted_turns_parse_identically(name: str) -> None:
    ctx = TurnContext(request_message_id=1, response_message_id=2, search_enabled=True)
    rounds = [b"".join(r) for r in render(SCRIPTS[name], ctx)]
    assert_same(rounds)


# -- hand-written edge cases ----------------------------------------------------


def test_leaked_marker_in_a_token_is_cut_and_later_tokens_dropped() -> None:
    fast = assert_same([body(*opening(frag(1, "RESPONSE")), {"p": CONTENT, "o": "APPEND", "v": "a"},
                             {"v": "b"}, {"v": "c \tCONTENT_FILTER d"}, {"v": "e"}, FINISHED)])
    assert fast.answer == "abc"


def test_content_filter_stops_text_on_both_paths() -> None:
    fast = assert_same([body(*opening(frag(1, "RESPONSE")), {"p": CONTENT, "o": "APPEND", "v": "a"},
                             {"v": "b"}, {"p": "response/status", "o": "SET", "v": "CONTENT_FILTER"},
                             {"p": CONTENT, "v": "c"}, {"v": "d"})])
    assert fast.answer == "ab"
    assert any(isinstance(e, ContentFiltered) for e in fast.events)


def test_filter_frame_between_tokens_stops_the_fast_path() -> None:
    """The ``code`` frame leaves the cursor on the content, so the next token is path-less."""
    fast = assert_same([body(*opening(frag(1, "RESPONSE")), {"p": CONTENT, "o": "APPEND", "v": "a"},
                             {"v": "b"}, {"code": "content_filter"}, {"v": "c"}, {"v": "d"})])
    assert fast.answer == "ab"


def test_fragment_type_that_is_not_a_string_is_skipped() -> None:
    fast = assert_same([body(*opening(frag(1, "THINK")), {"p": CONTENT, "o": "APPEND", "v": "a"},
                             {"v": "b"}, {"p": "response/fragments/-1/type", "o": "SET",
                                          "v": {"odd": 1}}, {"v": "c"}, FINISHED)])
    assert fast.thinking == "ab"


def test_sticky_set_is_not_an_append() -> None:
    fast = assert_same([body(*opening(frag(1, "THINK")), {"p": CONTENT, "o": "APPEND", "v": "a"},
                             {"v": "b"}, {"p": CONTENT, "o": "SET", "v": "abX"}, {"v": "Y"},
                             {"p": CONTENT, "o": "APPEND", "v": "c"}, {"v": "d"}, FINISHED)])
    assert fast.thinking == "abXcd"  # "Y" replaced the text: nothing new to send


def test_cursor_on_another_field_takes_the_general_path() -> None:
    assert_same([body(*opening(frag(1, "THINK")), {"p": CONTENT, "o": "APPEND", "v": "a"},
                      {"v": "b"}, {"p": "response/fragments/-1/elapsed_secs", "o": "SET", "v": 1.5},
                      {"v": "c"}, {"p": "response/fragments", "o": "APPEND",
                                   "v": [frag(2, "RESPONSE", "x")]},
                      {"p": CONTENT, "v": "y"}, {"v": "z"}, FINISHED)])


def test_duplicate_fragment_ids_and_odd_fragments() -> None:
    assert_same([body(*opening(frag(1, "THINK", "t"), frag(7, "MYSTERY", "?"), "not a fragment",
                               frag(1, "RESPONSE")),
                      {"p": CONTENT, "o": "APPEND", "v": "a"}, {"v": "b"},
                      {"p": "response/fragments", "o": "APPEND", "v": [frag(3, "RESPONSE")]},
                      {"p": CONTENT, "v": "c"}, {"v": "d"}, {"v": ""}, {"v": 5}, {"v": None},
                      {"v": {"text": "obj"}}, {"v": "e"}, FINISHED)], min_taken=2)


def test_non_string_content_and_failed_patches() -> None:
    assert_same([body(*opening(frag(1, "RESPONSE", None)), {"p": CONTENT, "o": "APPEND", "v": "a"},
                      {"v": "b"}, {"p": "response/fragments/-1/content/x", "v": "bad"},
                      {"v": "c"}, {"p": "response/fragments/-1/type", "o": "SET", "v": "TIP"},
                      {"p": CONTENT, "o": "APPEND", "v": "hidden"}, {"v": "more"},
                      {"p": "response/fragments/-1/type", "o": "SET", "v": "RESPONSE"},
                      {"p": CONTENT, "o": "APPEND", "v": "d"}, {"v": "e"}, FINISHED)])


def test_snapshot_shorter_than_what_was_sent() -> None:
    first = body(*opening(frag(1, "THINK")), {"p": CONTENT, "o": "APPEND", "v": "abc"},
                 {"v": "def"}, {"p": "response/status", "o": "SET", "v": "INCOMPLETE"})
    second = body({"v": {"response": {"message_id": 2, "status": "WIP",
                                      "fragments": [frag(1, "THINK", "abcd")]}}},
                  {"p": CONTENT, "o": "APPEND", "v": "e"}, {"v": "f"}, {"v": "gh"}, FINISHED)
    fast = assert_same([first, second])
    assert fast.thinking == "abcdefgh"


def test_events_frames_and_legacy_fields_around_tokens() -> None:
    assert_same([body("event: ready", {"request_message_id": 1, "response_message_id": 2},
                      ": comment", *opening(frag(1, "THINK")),
                      {"p": CONTENT, "o": "APPEND", "v": "a"}, "event: update_session",
                      {"v": "not text"}, {"v": "b\r"}, "data: {\"v\":\"c\"}\r", "data: [DONE]",
                      {"p": "response/content", "v": "legacy"}, {"v": " answer"},
                      {"p": CONTENT, "o": "APPEND", "v": "d"}, {"v": "e"}, "data: {broken",
                      {"v": "f", "p": CONTENT}, {"v": "g"}, {"error": "boom"}, FINISHED)])


def test_random_streams_parse_identically() -> None:
    """Random mixes of tokens and structural patches; a fixed seed keeps it repeatable."""
    rng = random.Random(20260405)
    for _ in range(300):
        rounds = [random_round(rng) for _ in range(rng.randint(1, 3))]
        assert_same(rounds, min_taken=0)


def random_round(rng: random.Random) -> bytes:
    kinds = ["THINK", "RESPONSE", "TIP", "SEARCH_X"]
    frames: list[Any] = opening(frag(rng.randint(1, 3), rng.choice(kinds)))
    words = ["a", " ", "\n", "b c", "CONTENT_FILTER", "", "\t", "ü"]
    for _ in range(rng.randint(5, 40)):
        roll = rng.random()
        if roll < 0.6:
            frames.append({"v": rng.choice(words)})
        elif roll < 0.7:
            frames.append({"p": CONTENT, "o": rng.choice(["APPEND", "SET"]), "v": rng.choice(words)})
        elif roll < 0.78:
            frames.append({"p": "response/fragments", "o": "APPEND",
                           "v": [frag(rng.randint(1, 4), rng.choice(kinds), rng.choice(words))]})
        elif roll < 0.84:
            frames.append({"p": "response/fragments/-1/elapsed_secs", "o": "SET", "v": 1})
        elif roll < 0.88:
            frames.append({"p": "response/status", "o": "SET",
                           "v": rng.choice(["WIP", "INCOMPLETE", "CONTENT_FILTER"])})
        elif roll < 0.93:
            frames.append({"p": "response/fragments/-1/type", "o": "SET", "v": rng.choice(kinds)})
        else:
            frames.append({"v": {"response": {"message_id": 2, "fragments": [
                frag(rng.randint(1, 3), rng.choice(kinds), "a" * rng.randint(0, 6))]}}})
    frames.append(FINISHED)
    return body(*frames)


# -- long and adversarial streams (tokens joined lazily) -------------------------

ODD_TOKENS = ["a", "ü", "😀", "\x00", "\\", "\"", "\u2028", "CONTENT_", "FILTER", " ", "\r", "",
              "x" * 5000]


def long_round(rng: random.Random, tokens: int) -> bytes:
    """Thousands of tokens into one fragment, with the odd patch, switch and empty token."""
    frames: list[Any] = opening(frag(1, "THINK"))
    frames.append({"p": CONTENT, "o": "APPEND", "v": "start"})
    next_id = 2
    for n in range(tokens):
        roll = rng.random()
        if roll < 0.002:
            frames.append({"p": "response/fragments", "o": "APPEND",
                           "v": [frag(next_id, rng.choice(["THINK", "RESPONSE"]), "")]})
            next_id += 1
            frames.append({"p": CONTENT, "o": "APPEND", "v": "new"})
        elif roll < 0.004:
            frames.append({"p": "response/fragments/-1/elapsed_secs", "o": "SET", "v": n})
            frames.append({"p": CONTENT, "o": "APPEND", "v": "back"})
        elif roll < 0.005:
            frames.append({"p": "response", "o": "BATCH",
                           "v": [{"p": "accumulated_token_usage", "v": n}]})
            frames.append({"p": CONTENT, "o": "APPEND", "v": "back"})
        frames.append({"v": rng.choice(ODD_TOKENS) if rng.random() < 0.1 else f"t{n} "})
    frames.append({"p": "response/status", "o": "SET", "v": "INCOMPLETE"})
    return body(*frames)


def test_long_stream_parses_identically() -> None:
    rng = random.Random(1205)
    fast = assert_same([long_round(rng, 6000)], min_taken=5000)
    assert len(fast.thinking) + len(fast.answer) > 40000


def test_long_stream_then_a_continue_snapshot_parses_identically() -> None:
    rng = random.Random(99)
    first = long_round(rng, 3000)
    whole = parse([first], fast=False).parser.tree["response"]["fragments"]
    snapshot = [dict(f, content=f["content"] + "more") for f in whole]
    second = body({"v": {"response": {"message_id": 2, "status": "WIP", "fragments": snapshot}}},
                  {"p": CONTENT, "o": "APPEND", "v": "tail"}, {"v": "end"}, FINISHED)
    fast = assert_same([first, second], min_taken=2000)
    assert fast.text(fast.events[-2].kind).endswith("moretailend")


def test_reading_the_tree_between_tokens_sees_every_token() -> None:
    """Reads (tree, citations) in the middle of a run of tokens join the pending
    ones first, and the tokens after a read still take the fast path."""
    rng = random.Random(5)
    rounds = [long_round(rng, 2000)]
    slow = CountingParser(fast_path=False)
    fast = CountingParser(fast_path=True)
    for parser in (slow, fast):
        parser.start_round()
    for n, line in enumerate(lines_of(rounds[0])):
        assert fast.feed_line(line) == slow.feed_line(line)
        if n % 37 == 0:
            assert fast.tree == slow.tree
            assert fast.citations() == slow.citations()
    assert fast.tree == slow.tree
    assert fast.taken >= 1500


def test_one_huge_token_and_many_empty_ones() -> None:
    huge = "y" * 2_000_000
    assert_same([body(*opening(frag(1, "RESPONSE")), {"p": CONTENT, "o": "APPEND", "v": "a"},
                      *([{"v": ""}] * 500), {"v": huge}, *([{"v": ""}] * 500), {"v": "z"},
                      FINISHED)])


def test_leak_marker_split_across_tokens_is_treated_alike() -> None:
    """Each token is checked on its own on both paths; a marker split in two is
    not a marker for either."""
    fast = assert_same([body(*opening(frag(1, "RESPONSE")),
                             {"p": CONTENT, "o": "APPEND", "v": "a"}, {"v": "CONTENT_"},
                             {"v": "FILTER"}, {"v": " b"}, {"v": "CONTENT_FILTER"}, {"v": "c"},
                             FINISHED)])
    assert fast.answer == "aCONTENT_FILTER b"


def test_runs_hold_only_consecutive_answer_tokens() -> None:
    parser = StreamParser(thinking_enabled=True)
    parser.answer_runs = True
    lines = lines_of(body(*opening(frag(1, "THINK")), {"p": CONTENT, "o": "APPEND", "v": "t"},
                          {"v": "u"}, {"p": "response/fragments", "o": "APPEND",
                                       "v": [frag(2, "RESPONSE")]},
                          {"p": CONTENT, "o": "APPEND", "v": "a"}, {"v": "b"}, {"v": "c"},
                          {"p": "response/fragments/-1/elapsed_secs", "o": "SET", "v": 1.5},
                          {"p": CONTENT, "o": "APPEND", "v": "d"}, {"v": "e"}, FINISHED))
    events = [e for e in parser.feed_lines(lines) if not isinstance(e, StatusChanged)]
    assert events == [TextChunk("thinking", "t"), TextChunk("thinking", "u"),
                      TextChunk("answer", "a"), ["b", "c"], TextChunk("answer", "d"), ["e"]]


# -- runs of token lines (one match and one decode for many lines) ---------------

ODD_LINES = [
    'data: {"v":"a\tb"}', 'data: {"v":"\\q"}', 'data: {"v":"\\ud800"}', 'data: {"v":"\\udc00x"}',
    'data: {"v":"\\ud83d\\ude00"}', 'data: {"v":"\\/\\b\\f\\n\\r\\t\\u0041"}',
    'data: {"v":"a"} ', 'data: {"v":"a","x":1}', 'data: {"v":"a"}\r', "", "",
    'data: {"v":"unterminated', 'data: {"v":""}', 'data: {"v":"\\\\"}', 'data: {"v":"\\""}',
    'data: {"v" :"a"}', 'data:{"v":"a"}', 'data: {"v":"a"}}', 'data: {"v":"x\\',
    'data: {"v":"\\u00"}', 'data: {"v":"}\\ndata: {\\"v\\":\\""}', 'data: {"v":"\x7f\u2028"}',
    ": comment", "event: update_session", 'data: {"v":"CONTENT_"}',
    'data: {"v":"\\u0043ONTENT_FILTER"}', 'data: {"v":"ab\\u0000"}',
]


def odd_round(rng: random.Random, lines: int) -> bytes:
    """Compact token lines mixed with ones that look like them and are not
    (bad escapes, lone surrogates, control characters, stray spaces,
    blank lines), a few that leak the marker near the end."""
    frames: list[Any] = opening(frag(1, rng.choice(["THINK", "RESPONSE"])))
    frames.append({"p": CONTENT, "o": "APPEND", "v": "start"})
    for n in range(lines):
        roll = rng.random()
        if roll < 0.15:
            frames.append(rng.choice(ODD_LINES))
        elif roll < 0.17:
            frames.append({"p": "response/fragments", "o": "APPEND",
                           "v": [frag(n + 2, rng.choice(["THINK", "RESPONSE"]), "")]})
            frames.append({"p": CONTENT, "o": "APPEND", "v": "new"})
        else:
            frames.append({"v": rng.choice(ODD_TOKENS[:-1]) if rng.random() < 0.2 else f"w{n} "})
    if rng.random() < 0.3:
        frames.append('data: {"v":"so CONTENT_FILTER"}')
        frames.append({"v": "after"})
    frames.append(FINISHED)
    return body(*frames)


def test_runs_with_lookalike_lines_parse_identically() -> None:
    rng = random.Random(7)
    for _ in range(60):
        assert_same([odd_round(rng, rng.randint(20, 400))], min_taken=0)


def test_long_runs_with_lookalike_lines_parse_identically() -> None:
    rng = random.Random(8)
    assert_same([odd_round(rng, 8000), odd_round(rng, 3000)], thinking=False, min_taken=1000)


def test_a_run_is_taken_in_one_go_and_a_refused_run_line_by_line() -> None:
    """A read of compact tokens is one run, cut by a line that is not one (a
    raw tab); a run that will not decode (a lone surrogate) or holds the
    marker goes line by line, with the same events."""
    head = body(*opening(frag(1, "RESPONSE")), {"p": CONTENT, "o": "APPEND", "v": "a"})
    tokens = [f'data: {{"v":"t{n}"}}' for n in range(300)]
    for bad, runs in [(None, 300), ('data: {"v":"a\tb"}', 300), ('data: {"v":"\\ud800"}', 0),
                      ('data: {"v":"CONTENT_FILTER"}', 0)]:
        lines = tokens[:150] + ([bad] if bad else []) + tokens[150:]
        rounds = [head + ("\n\n".join(lines) + "\n\n").encode() + body(FINISHED)]
        slow = parse(rounds, fast=False)
        batched = Reconstruction(RunCountingParser())
        batched.parser.answer_runs = True
        batched.parser.start_round()
        for chunk in [head, ("\n".join(lines) + "\n").encode(), body(FINISHED)]:
            batched.events += expanded(batched.parser.feed_lines(lines_of(chunk)))
        assert batched.events == slow.events
        assert batched.parser.run_tokens == runs


def test_tokens_that_each_name_their_path_take_the_fast_path() -> None:
    """Some streams write every token with its path and op; each one went the
    general way (a walk of the tree and a re-read of the whole fragment), so
    such an answer cost time quadratic in its length."""
    tokens = [f"t{i} " for i in range(300)]
    fast = assert_same([body(*opening(frag(1, "THINK")),
                             *({"p": CONTENT, "o": "APPEND", "v": t} for t in tokens[:100]),
                             {"p": "response/fragments", "o": "APPEND", "v": [frag(2, "RESPONSE")]},
                             *({"p": CONTENT, "o": "APPEND", "v": t} for t in tokens[100:]),
                             {"p": CONTENT, "v": "x"}, {"v": "y"},
                             {"p": CONTENT, "o": "SET", "v": "replaced"}, {"p": CONTENT, "v": "z"},
                             FINISHED)], min_taken=2)
    assert fast.parser.taken >= 290  # line by line: such lines never come in runs
    assert fast.thinking == "".join(tokens[:100])
    assert fast.answer.startswith("".join(tokens[100:]) + "xy")
