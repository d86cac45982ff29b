"""Unit cases of the stream parser: the patch rules and the text rules one by one."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from ds2proxy.upstream.events import (
    ContentFiltered,
    Hint,
    Ready,
    StatusChanged,
    TextChunk,
    UpstreamEvent,
    UpstreamFault,
)
from ds2proxy.upstream.patch_ops import PatchError, apply
from ds2proxy.upstream.stream_parser import StreamParser

TEMPLATE = "你好，这个问题我暂时无法回答，让我们换个话题再聊聊吧。"


def feed(parser: StreamParser, *frames: Any) -> list[UpstreamEvent]:
    """Feed dict frames as ``data:`` events and strings as raw lines."""
    events: list[UpstreamEvent] = []
    for frame in frames:
        lines = [frame] if isinstance(frame, str) else ["data: " + orjson.dumps(frame).decode(), ""]
        for line in lines:
            events.extend(parser.feed_line(line))
    return events


def texts(events: list[UpstreamEvent], kind: str | None = None) -> list[str]:
    return [e.text for e in events if isinstance(e, TextChunk) and kind in (None, e.kind)]


def envelope(*fragments: dict, status: str = "WIP", **extra: Any) -> dict:
    return {"v": {"response": {"message_id": 2, "status": status, "fragments": list(fragments),
                               "accumulated_token_usage": 0, "auto_continue": False, **extra}}}


def think(fid: int, content: str) -> dict:
    return {"id": fid, "type": "THINK", "content": content, "references": []}


def answer(fid: int, content: str) -> dict:
    return {"id": fid, "type": "RESPONSE", "content": content, "references": []}


@pytest.fixture
def parser() -> StreamParser:
    p = StreamParser()
    p.start_round()
    return p


def test_pathless_tokens_append_to_the_sticky_path(parser: StreamParser) -> None:
    events = feed(parser, envelope(think(2, "我们")),
                  {"p": "response/fragments/-1/content", "o": "APPEND", "v": "被"},
                  {"v": "要求"}, {"v": " "}, {"v": "\n\n"})
    assert texts(events, "thinking") == ["我们", "被", "要求", " ", "\n\n"]


def test_op_is_inherited_even_when_path_is_given(parser: StreamParser) -> None:
    events = feed(parser, envelope(think(2, "a")),
                  {"p": "response/fragments", "o": "APPEND", "v": [answer(3, "##")]},
                  {"p": "response/fragments/-1/content", "v": " "},
                  {"v": "Title"})
    assert "".join(texts(events, "answer")) == "## Title"


def test_status_set_is_inherited_from_a_previous_set(parser: StreamParser) -> None:
    events = feed(parser, envelope(think(2, "x")),
                  {"p": "response/fragments/-1/elapsed_secs", "o": "SET", "v": 1.5},
                  {"p": "response/status", "v": "INCOMPLETE"})
    assert StatusChanged("INCOMPLETE") in events
    assert parser.status == "INCOMPLETE" and parser.ended and parser.should_continue


def test_tip_fragment_appended_by_inheritance_is_not_text(parser: StreamParser) -> None:
    tip = {"id": 4, "type": "TIP", "content": "本回答由 AI 生成", "style": "WARNING"}
    events = feed(parser, envelope(answer(2, "hi")),
                  {"p": "response/fragments/-1/content", "o": "APPEND", "v": "!"},
                  {"p": "response/fragments", "v": [tip]}, {"v": "ignored?"})
    assert texts(events) == ["hi", "!"]
    # APPEND was inherited: the TIP joined the answer instead of replacing it.
    kinds = [f.get("type") for f in parser.tree["response"]["fragments"] if isinstance(f, dict)]
    assert kinds == ["RESPONSE", "TIP"]


def test_batch_runs_a_fresh_sub_cursor_and_keeps_the_outer_one(parser: StreamParser) -> None:
    events = feed(
        parser, envelope(answer(2, "Sunny")),
        {"p": "response/fragments/-1", "o": "BATCH",
         "v": [{"p": "content", "o": "APPEND", "v": "[reference:0]"},
               {"p": "references", "o": "SET", "v": [{"id": 5, "type": "TOOL_OPEN"}]}]},
        {"v": [{"p": "content", "o": "APPEND", "v": "[reference:1]"},
               {"p": "references", "v": [{"id": 6, "type": "TOOL_OPEN"}]}]},
        {"p": "response", "o": "BATCH", "v": [{"p": "accumulated_token_usage", "v": 40},
                                              {"p": "quasi_status", "v": "FINISHED"}]},
        {"p": "response", "o": "BATCH", "v": [{"p": "accumulated_token_usage", "v": 42}]},
    )
    assert "".join(texts(events)) == "Sunny[reference:0][reference:1]"
    # The sibling's APPEND was inherited: both references are kept.
    refs = parser.tree["response"]["fragments"][-1]["references"]
    assert [r["id"] for r in refs] == [5, 6]
    # Usage is SET (absolute), not added.
    assert parser.upstream_usage == 42
    assert parser.status == "FINISHED"


def test_root_set_replaces_the_whole_tree(parser: StreamParser) -> None:
    feed(parser, envelope(think(2, "old"), extra_key=1))
    feed(parser, envelope(think(7, "new")))
    response = parser.tree["response"]
    assert "extra_key" not in response
    assert [f["id"] for f in response["fragments"]] == [7]


def _two_rounds(second_content: str, second_tokens: list[str]) -> list[UpstreamEvent]:
    parser = StreamParser()
    parser.start_round()
    first = feed(parser, envelope(think(2, "abc")),
                 {"p": "response/fragments/-1/content", "o": "APPEND", "v": "def"},
                 {"p": "response/status", "o": "SET", "v": "INCOMPLETE"})
    assert parser.should_continue
    parser.start_round()
    second = feed(parser, envelope(think(2, second_content)),
                  *[{"p": "response/fragments/-1/content", "o": "APPEND", "v": t}
                    for t in second_tokens])
    return first + second


def test_snapshot_longer_than_streamed_yields_only_the_extra() -> None:
    events = _two_rounds("abcdefGH", ["IJ"])
    assert texts(events) == ["abc", "def", "GH", "IJ"]


def test_snapshot_shorter_prefix_yields_nothing_until_it_grows_past() -> None:
    events = _two_rounds("abcd", ["e", "fX", "Y"])
    assert "".join(texts(events)) == "abcdefXY"


def test_snapshot_anomaly_is_logged_and_not_reemitted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ds2proxy.upstream.stream"):
        events = _two_rounds("zzz", ["!"])
    assert texts(events) == ["abc", "def", "!"]
    assert "changed behind the stream" in caplog.text


def test_content_filter_after_text_keeps_text_and_never_emits_template(
        parser: StreamParser) -> None:
    events = feed(
        parser, envelope(answer(2, "partial answer")),
        {"p": "response", "o": "BATCH", "v": [{"p": "quasi_status", "v": "FINISHED"}]},
        ": ",
        {"v": [{"p": "ban_regenerate", "v": True}, {"p": "status", "v": "CONTENT_FILTER"},
               {"p": "fragments", "v": [{"id": 9, "type": "TEMPLATE_RESPONSE",
                                         "content": TEMPLATE}]},
               {"p": "quasi_status", "v": "CONTENT_FILTER"}]},
        {"p": "response/fragments/-1/content", "o": "APPEND", "v": "more"},
    )
    assert texts(events) == ["partial answer"]
    assert ContentFiltered(TEMPLATE) in events
    assert parser.status == "CONTENT_FILTER" and parser.ended and not parser.should_continue


def test_content_filter_with_no_text(parser: StreamParser) -> None:
    events = feed(parser, envelope(),
                  {"p": "response", "o": "BATCH",
                   "v": [{"p": "status", "v": "CONTENT_FILTER"},
                         {"p": "fragments", "v": [{"id": 3, "type": "TEMPLATE_RESPONSE",
                                                   "content": TEMPLATE}]}]})
    assert texts(events) == []
    assert [e for e in events if isinstance(e, ContentFiltered)] == [ContentFiltered(TEMPLATE)]


def test_top_level_content_filter_code(parser: StreamParser) -> None:
    events = feed(parser, {"code": "content_filter"})
    assert ContentFiltered("") in events and parser.status == "CONTENT_FILTER"


def test_leaked_marker_cuts_the_rest_of_that_answer(parser: StreamParser) -> None:
    events = feed(parser, envelope(answer(2, "ok ")),
                  {"p": "response/fragments/-1/content", "o": "APPEND",
                   "v": "fine \tCONTENT_FILTER模板"},
                  {"v": "模板续"})
    assert texts(events) == ["ok ", "fine"]


def test_lower_case_content_filter_is_ordinary_text(parser: StreamParser) -> None:
    events = feed(parser, envelope(answer(2, 'finish_reason is "content_filter"')))
    assert texts(events) == ['finish_reason is "content_filter"']


def test_sse_framing_ready_hint_error_done_and_comments(parser: StreamParser) -> None:
    events = feed(parser, "event: ready",
                  'data: {"request_message_id":3,"response_message_id":4,"model_type":"expert"}',
                  "", ": keep-alive", "event: hint",
                  'data: {"type":"error","content":"too fast","clear_response":true,'
                  '"finish_reason":"rate_limit_reached"}', "",
                  "data: [DONE]", 'data: {"error":{"message":"boom"}}', "id: 7", "retry: 10")
    assert events == [Ready(3, 4, "expert"), Hint("error", "too fast", "rate_limit_reached"),
                      UpstreamFault("boom")]
    assert parser.request_message_id == 3 and parser.response_message_id == 4


def test_an_error_event_without_an_error_key_is_the_upstreams_fault(
        parser: StreamParser) -> None:
    """``event: error`` whose data names the problem in ``message`` (or any
    field) was read as a patch without a value and skipped, so the turn ended
    as "ended before the answer was complete" without the upstream's words."""
    events = feed(parser, "event: error", 'data: {"message":"server overloaded","code":503}',
                  "", "event: error", 'data: {"code":42}', "")
    assert events == [UpstreamFault("server overloaded"), UpstreamFault('{"code":42}')]


def test_event_name_applies_to_one_data_line_only(parser: StreamParser) -> None:
    events = feed(parser, "event: title", 'data: {"content":"t"}',
                  'data: {"v":{"response":{"fragments":'
                  '[{"id":2,"type":"RESPONSE","content":"x"}]}}}')
    assert texts(events) == ["x"]


def test_lines_of_any_length(parser: StreamParser) -> None:
    big = "字" * 200_000
    events = feed(parser, envelope(think(2, big)), {"p": "response/fragments/-1/content",
                                                    "o": "APPEND", "v": "!"})
    assert texts(events) == [big, "!"]


def test_unknown_ops_paths_and_junk_are_skipped(parser: StreamParser,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ds2proxy.upstream.stream"):
        events = feed(parser, envelope(answer(2, "a")),
                      {"p": "response/fragments/-1/content", "o": "REMOVE", "v": "x"},
                      {"p": "response/fragments/9/content", "o": "APPEND", "v": "x"},
                      {"p": "response/fragments/-1/content", "o": "APPEND", "v": 5},
                      "data: {not json", {"p": "response/fragments", "o": "APPEND",
                                          "v": [{"id": 3, "type": "MYSTERY", "content": "m"}]},
                      {"p": "response/fragments/-2/content", "o": "APPEND", "v": "b"})
    assert texts(events) == ["a", "b"]
    assert "unknown op" in caplog.text and "out of range" in caplog.text
    assert "MYSTERY" in caplog.text


@pytest.mark.parametrize("key", ["²", "٣", "-²", "--1", "1_0", " 1"])
def test_a_path_index_that_is_not_ascii_digits_is_a_patch_error(key: str) -> None:
    with pytest.raises(PatchError, match="non-integer index"):
        apply({"response": {"fragments": [{"content": ""}]}}, f"response/fragments/{key}/content",
              "APPEND", "x")


def test_a_patch_at_a_superscript_index_is_skipped_and_the_stream_goes_on(
        parser: StreamParser, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ds2proxy.upstream.stream"):
        events = feed(parser, envelope(answer(2, "a")),
                      {"p": "response/fragments/²/content", "o": "APPEND", "v": "x"},
                      {"p": "response/fragments/-1/content", "o": "APPEND", "v": "b"})
    assert texts(events) == ["a", "b"]
    assert "non-integer index" in caplog.text


def test_auto_continue_requests_a_continue_unless_finished(parser: StreamParser) -> None:
    feed(parser, envelope(answer(2, "a")), {"p": "response/auto_continue", "v": True})
    assert parser.status == "WIP" and parser.should_continue
    feed(parser, {"p": "response/status", "v": "FINISHED"})
    assert not parser.should_continue


def test_wip_alone_never_continues_and_start_round_resets(parser: StreamParser) -> None:
    feed(parser, envelope(answer(2, "a")))
    assert parser.status == "WIP" and not parser.ended and not parser.should_continue
    feed(parser, {"p": "response/status", "v": "INCOMPLETE"})
    parser.start_round()
    assert parser.status is None and not parser.ended and not parser.should_continue


def test_legacy_flat_fields_and_object_values() -> None:
    parser = StreamParser()
    parser.start_round()
    events = feed(parser, {"p": "response/thinking_content", "v": "think "},
                  {"v": {"text": "more"}}, {"p": "response/content", "v": {"content": "Ans"}},
                  {"v": "wer"})
    assert texts(events, "thinking") == ["think ", "more"]
    assert texts(events, "answer") == ["Ans", "wer"]


def test_legacy_reasoning_after_think_close_tag_becomes_answer() -> None:
    parser = StreamParser()
    parser.start_round()
    events = feed(parser, {"p": "response/thinking_content", "v": "<think>why"},
                  {"v": "</think>Because"}, {"v": "."})
    assert "".join(texts(events, "thinking")) == "why"
    assert "".join(texts(events, "answer")) == "Because."


def test_root_level_pathless_object_text_follows_the_current_kind() -> None:
    parser = StreamParser(thinking_enabled=False)
    parser.start_round()
    events = feed(parser, {"v": {"text": "hello"}})
    assert texts(events, "answer") == ["hello"]


def test_citations_resolve_open_pages_and_search_results(parser: StreamParser) -> None:
    search = {"id": 3, "type": "TOOL_SEARCH", "results": [{"url": "https://s/1", "title": "S1"}]}
    page = {"id": 4, "type": "TOOL_OPEN", "result": {"url": "https://o/1", "title": "O1"}}
    refs = [{"id": 4, "type": "TOOL_OPEN"}, {"id": 3, "type": "TOOL_SEARCH"},
            {"id": 99, "type": "TOOL_OPEN"}]
    feed(parser, envelope(search, page, {**answer(5, "x[reference:0][reference:1]"),
                                         "references": refs}))
    assert parser.citations() == [(0, "https://o/1", "O1"), (1, "https://s/1", "S1")]
