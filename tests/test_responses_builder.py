"""The Responses event state machine: golden event order, items, ids, failures."""

from __future__ import annotations

import re

import typing

import pytest
from openai.types.responses import ResponseStreamEvent

from ds2proxy.canonical import (
    Citation,
    CollectedCall,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    TurnResult,
    Usage,
)
from ds2proxy.errors import ToolChoiceViolation
from plugins.openai.responses_builder import ResponseBuilder, ResponseHeader, turn_events

# Every official stream event class, by its ``type`` literal.
EVENT_CLASSES = {typing.get_args(cls.model_fields["type"].annotation)[0]: cls
                 for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])}
HEX32 = "[0-9a-f]{32}"


def builder(**namespaces: str) -> ResponseBuilder:
    return ResponseBuilder(ResponseHeader(id="resp_" + "0" * 32, created_at=1700000000,
                                          model="gpt-test", namespaces=namespaces,
                                          echo={"tools": [], "tool_choice": "auto",
                                                "parallel_tool_calls": True}))


def run(events: list, b: ResponseBuilder | None = None) -> tuple[list[dict], ResponseBuilder]:
    b = b or builder()
    out: list[dict] = []
    for event in events:
        out += b.feed(event)
    out += b.finish()
    return out, b


def types_of(payloads: list[dict]) -> list[str]:
    return [p["type"] for p in payloads]


TEXT_ONLY = [
    "response.created", "response.in_progress",
    "response.output_item.added", "response.content_part.added",
    "response.output_text.delta", "response.output_text.delta",
    "response.output_text.done", "response.content_part.done", "response.output_item.done",
    "response.completed",
]


def test_text_only_stream_follows_the_golden_order() -> None:
    payloads, b = run([TextDelta("Hel"), TextDelta("lo"), Usage(5, 2), Finish("stop")])
    assert types_of(payloads) == TEXT_ONLY
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    done = payloads[-1]["response"]
    assert done["status"] == "completed"
    assert done["output_text"] == "Hello"
    assert done["output"][0]["content"][0]["text"] == "Hello"
    assert done["usage"] == {
        "input_tokens": 5, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 7}
    assert re.fullmatch(f"msg_{'0' * 32}_0", done["output"][0]["id"])


def test_every_payload_validates_against_the_official_event_types() -> None:
    payloads, _ = run([ReasoningDelta("think"), TextDelta("Hi "),
                       ToolCallStart(0, "call_" + "a" * 32, "read", "function"),
                       ToolCallArgs(0, '{"p":1}'), ToolCallEnd(0),
                       ToolCallStart(1, "call_" + "b" * 32, "apply_patch", "custom"),
                       ToolCallArgs(1, "*** Begin Patch"), ToolCallEnd(1),
                       Usage(1, 1), Finish("tool_calls")])
    for payload in payloads:
        parsed = EVENT_CLASSES[payload["type"]].model_validate(payload)
        assert parsed.sequence_number == payload["sequence_number"]


def test_reasoning_text_and_calls_each_get_their_own_closed_item() -> None:
    call_id = "call_" + "c" * 32
    payloads, _ = run([ReasoningDelta("plan"), TextDelta("Reading."),
                       ToolCallStart(0, call_id, "read_file"), ToolCallArgs(0, '{"path":"a"}'),
                       ToolCallEnd(0), TextDelta("Done."), Finish("tool_calls")])
    assert types_of(payloads)[2:] == [
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]
    output = payloads[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "message", "function_call",
                                                 "message"]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "plan"}]
    call = output[2]
    assert re.fullmatch(f"fc_{'0' * 32}_[0-9]+", call["id"]) and call["call_id"] == call_id
    assert call["arguments"] == '{"path":"a"}' and call["status"] == "completed"
    assert payloads[-1]["response"]["output_text"] == "Reading.Done."


def test_added_precedes_deltas_and_done_follows_them_for_every_item() -> None:
    payloads, _ = run([ReasoningDelta("r"), TextDelta("t"),
                       ToolCallStart(0, "call_x", "f"), ToolCallArgs(0, "{}"), ToolCallEnd(0),
                       Finish("tool_calls")])
    seen: dict[int, list[str]] = {}
    for p in payloads:
        if "output_index" in p:
            seen.setdefault(p["output_index"], []).append(p["type"])
    for kinds in seen.values():
        assert kinds[0] == "response.output_item.added"
        assert kinds[-1] == "response.output_item.done"
        assert kinds.count("response.output_item.done") == 1
    last_done = max(i for i, p in enumerate(payloads) if p["type"] == "response.output_item.done")
    assert payloads[-1]["type"] == "response.completed" and last_done < len(payloads) - 1


def test_whitespace_before_a_call_makes_no_message_item() -> None:
    payloads, _ = run([TextDelta("\n\n"), ToolCallStart(0, "call_x", "f"), ToolCallArgs(0, "{}"),
                       ToolCallEnd(0), TextDelta("  "), Finish("tool_calls")])
    output = payloads[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["function_call"]
    assert payloads[-1]["response"]["output_text"] == ""


def test_leading_whitespace_of_visible_text_is_kept() -> None:
    payloads, _ = run([TextDelta("\n"), TextDelta(" x"), TextDelta(" \n"), Finish("stop")])
    assert payloads[-1]["response"]["output_text"] == "\n x \n"


def test_custom_call_streams_its_input_events() -> None:
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"
    payloads, _ = run([ToolCallStart(0, "call_" + "d" * 32, "apply_patch", "custom"),
                       ToolCallArgs(0, patch), ToolCallEnd(0), Finish("tool_calls")])
    assert types_of(payloads)[2:-1] == [
        "response.output_item.added", "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done", "response.output_item.done"]
    done = payloads[-2]["item"]
    assert done == {"type": "custom_tool_call", "id": done["id"], "call_id": "call_" + "d" * 32,
                    "name": "apply_patch", "input": patch, "status": "completed"}
    assert payloads[-4]["delta"] == patch and payloads[-3]["input"] == patch


def test_namespaced_function_call_names_its_namespace() -> None:
    payloads, _ = run([ToolCallStart(0, "call_n", "spawn_agent"), ToolCallArgs(0, "{}"),
                       ToolCallEnd(0), Finish("tool_calls")],
                      builder(spawn_agent="multi_agent_v1"))
    assert payloads[-1]["response"]["output"][0]["namespace"] == "multi_agent_v1"


def test_parallel_calls_get_distinct_items_and_ids() -> None:
    payloads, _ = run([ToolCallStart(0, "call_a", "f"), ToolCallStart(1, "call_b", "g"),
                       ToolCallArgs(0, '{"a":1}'), ToolCallArgs(1, '{"b":2}'),
                       ToolCallEnd(0), ToolCallEnd(1), Finish("tool_calls")])
    output = payloads[-1]["response"]["output"]
    assert [(c["call_id"], c["arguments"]) for c in output] == [("call_a", '{"a":1}'),
                                                                ("call_b", '{"b":2}')]
    assert output[0]["id"] != output[1]["id"]


def test_failure_ends_with_response_failed_and_no_completed() -> None:
    b = builder()
    payloads = b.feed(TextDelta("partial")) + b.fail(ToolChoiceViolation())
    assert types_of(payloads)[-1] == "response.failed"
    assert "response.completed" not in types_of(payloads)
    failed = payloads[-1]
    assert failed["status_code"] == 422
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "tool_choice_violation"
    assert failed["response"]["output"][0]["content"][0]["text"] == "partial"


def test_failure_before_any_output_still_opens_with_created() -> None:
    payloads = builder().fail(ToolChoiceViolation())
    assert types_of(payloads) == ["response.created", "response.in_progress", "response.failed"]


def test_answer_cut_by_the_token_limit_is_incomplete() -> None:
    payloads, b = run([TextDelta("abc"), Finish("length")])
    assert payloads[-1]["type"] == "response.incomplete"
    assert b.response()["status"] == "incomplete"
    assert b.response()["incomplete_details"] == {"reason": "max_output_tokens"}


def test_filtered_answer_completes_with_its_reason() -> None:
    # Agents (Codex) treat response.incomplete as a dropped stream and retry.
    payloads, b = run([TextDelta("abc"), Finish("content_filter")])
    assert types_of(payloads)[-2:] == ["response.output_item.done", "response.completed"]
    assert b.response()["status"] == "completed"
    assert b.response()["incomplete_details"] == {"reason": "content_filter"}
    assert b.response()["output_text"] == "abc"


def test_answer_filtered_before_any_text_fails() -> None:
    payloads, b = run([ReasoningDelta("hmm"), Finish("content_filter")])
    assert payloads[-1]["type"] == "response.failed"
    assert payloads[-1]["response"]["error"]["code"] == "content_filter"
    assert b.response()["status"] == "failed"


def test_citations_become_annotations_of_the_last_message() -> None:
    payloads, _ = run([TextDelta("Rain [reference:0]"), Citation(0, "https://w.example", "W"),
                       Finish("stop")])
    part = payloads[-1]["response"]["output"][0]["content"][0]
    assert part["annotations"][0]["url"] == "https://w.example"


def test_replayed_collection_builds_the_same_object_as_the_stream() -> None:
    events = [ReasoningDelta("why"), TextDelta("Look: "), ToolCallStart(0, "call_q", "f"),
              ToolCallArgs(0, '{"x":1}'), ToolCallEnd(0), TextDelta("after"),
              Usage(3, 4, 1), Finish("tool_calls")]
    streamed = run(events)[1].response()
    result = TurnResult(id="t", text="Look: after", reasoning="why",
                        calls=[CollectedCall("call_q", "f", '{"x":1}')], usage=Usage(3, 4, 1),
                        finish="tool_calls",
                        segments=[("text", "Look: "), ("call", 0), ("text", "after")])
    replayed = builder().replay(result)
    strip = lambda r: [{k: v for k, v in i.items() if k != "id"} for i in r["output"]]  # noqa: E731
    assert strip(replayed) == strip(streamed)
    assert replayed["usage"] == streamed["usage"]
    assert [type(e).__name__ for e in turn_events(result)] == [type(e).__name__ for e in events]


class CountedText(str):
    """A delta that counts each time it is appended to text before it."""

    appended = 0

    def __radd__(self, other: str) -> str:
        CountedText.appended += bool(other)
        return str.__add__(other, self)


def test_a_delta_is_kept_without_copying_the_text_before_it() -> None:
    """Each delta was appended to one string, which copied the whole text per
    delta: quadratic in a long answer, reasoning or call (80,000 deltas held
    the event loop for about 6 s; bench/responses_builder_bench.py prints the
    figures). The deltas are kept and joined when read, and read right."""
    CountedText.appended = 0
    b = builder()
    pieces = [CountedText(f"{n} ") for n in range(50)]
    blank = [CountedText("\n") for _ in range(5)]  # held until visible text follows
    _, b = run([ReasoningDelta(p) for p in pieces[:10]]
               + [TextDelta(p) for p in [*blank, *pieces[10:30]]]
               + [ToolCallStart(0, "call_1", "write"), *(ToolCallArgs(0, p) for p in pieces[30:]),
                  ToolCallEnd(0), Finish("tool_calls")], b)
    assert CountedText.appended == 0
    reasoning, message, call = b.response()["output"]
    assert reasoning["summary"][0]["text"] == "".join(pieces[:10])
    assert message["content"][0]["text"] == "".join([*blank, *pieces[10:30]])
    assert call["arguments"] == "".join(pieces[30:])
