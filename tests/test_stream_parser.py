"""The stream parser against the real recordings and the compat frame cases."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from ds2proxy.testing.reconstruct import reconstruct
from ds2proxy.testing.recordings import load_expected, load_rounds
from ds2proxy.upstream.events import ContentFiltered, TextChunk
from ds2proxy.upstream.stream_parser import StreamParser

RECORDINGS = [
    "markdown-format-example-20260405-spacefix",
    "longtext-deepseek-v4-flash-20260429",
    "continue-thinking-snapshot-replay-20260405",
    "guangzhou-weather-reasoner-search-20260404",
]
COMPAT = ["content_filter_status", "fragments_append", "leaked_content_filter",
          "nested_finished", "split_tool_json"]
# The third party's kind names, mapped onto ours.
KINDS = {"thinking": "thinking", "text": "answer"}


def _sample(fixtures_dir: Path, name: str) -> Path:
    folder = fixtures_dir / "deepseek-sse" / name
    assert folder.is_dir(), f"recording {name} missing"
    return folder


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_reconstructs_expected_text(fixtures_dir: Path, name: str) -> None:
    folder = _sample(fixtures_dir, name)
    expected = load_expected(folder)
    rounds = load_rounds(folder)
    assert len(rounds) == expected["rounds"]

    result = reconstruct(rounds)

    assert result.thinking == expected["thinking"]
    assert result.answer == expected["content"]
    assert result.parser.status == expected["status"]
    assert result.parser.ended
    # A continue is wanted after every round but the last.
    assert result.continue_after == [True] * (len(rounds) - 1) + [False]


def test_recordings_cover_whitespace_only_tokens(fixtures_dir: Path) -> None:
    result = reconstruct(load_rounds(_sample(fixtures_dir, RECORDINGS[0])))
    blanks = [e for e in result.events if isinstance(e, TextChunk) and not e.text.strip()]
    assert len(blanks) >= 100


def test_continue_round_yields_only_new_text(fixtures_dir: Path) -> None:
    first, second = load_rounds(_sample(fixtures_dir, "continue-thinking-snapshot-replay-20260405"))
    after_first = reconstruct([first]).thinking
    both = reconstruct([first, second])
    assert both.thinking.startswith(after_first)
    # The snapshot carried text never streamed in round 1; it arrives exactly once.
    assert len(both.thinking) > len(after_first)
    assert both.parser.upstream_usage is not None and both.parser.upstream_usage > 0
    assert both.parser.response_message_id == 2


def test_rounds_spliced_into_one_body(fixtures_dir: Path) -> None:
    folder = _sample(fixtures_dir, "continue-thinking-snapshot-replay-20260405")
    expected = load_expected(folder)
    result = reconstruct([b"".join(load_rounds(folder))])
    assert (result.thinking, result.answer) == (expected["thinking"], expected["content"])
    assert result.parser.status == "FINISHED"


def test_search_recording_citations_follow_references(fixtures_dir: Path) -> None:
    folder = _sample(fixtures_dir, "guangzhou-weather-reasoner-search-20260404")
    result = reconstruct(load_rounds(folder))
    cites = result.parser.citations()
    markers = result.answer.count("[reference:")
    assert [n for n, _, _ in cites] == list(range(markers))
    assert all(url.startswith("http") for _, url, _ in cites)
    assert all(f"[reference:{n}]" in result.answer for n, _, _ in cites)


def _compat(fixtures_dir: Path, name: str) -> tuple[dict, dict]:
    base = fixtures_dir / "deepseek-sse-compat"
    case = json.loads((base / "sse_chunks" / f"{name}.json").read_text(encoding="utf-8"))
    want = json.loads((base / "expected" / f"sse_{name}.json").read_text(encoding="utf-8"))
    return case, want


@pytest.mark.parametrize("name", COMPAT)
def test_compat_frame(fixtures_dir: Path, name: str) -> None:
    case, want = _compat(fixtures_dir, name)
    parser = StreamParser(thinking_enabled=case["thinking_enabled"])
    assert parser.current_kind == KINDS[case["current_type"]]
    parser.start_round()

    events = parser.feed_line("data: " + orjson.dumps(case["chunk"]).decode())

    parts = [{"text": e.text, "type": e.kind} for e in events if isinstance(e, TextChunk)
             if case["thinking_enabled"] or e.kind != "thinking"]
    assert parts == [{"text": p["text"], "type": KINDS[p["type"]]} for p in want["parts"]]
    assert parser.ended == want["finished"]
    assert parser.current_kind == KINDS[want["new_type"]]
    filtered = any(isinstance(e, ContentFiltered) for e in events)
    assert filtered == want.get("content_filter", False)
