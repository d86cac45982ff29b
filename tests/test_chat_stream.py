"""The pre-encoded text chunk of a chat stream is byte for byte what the
general path builds for the same delta, in every surface's style; so is a
run of them rendered and framed at once."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ds2proxy.canonical import (
    ChatRequest,
    Finish,
    Message,
    ReasoningDelta,
    ResolvedModel,
    TextDelta,
    TextPart,
    TextRun,
    ToolCallArgs,
    ToolCallStart,
    Usage,
)
from ds2proxy.dialects.chat_stream import ChatStreamRenderer
from ds2proxy.dialects.openai_chat import ChatStyle
from ds2proxy.frames import PayloadRun
from ds2proxy.sse import SSEWriter
from ds2proxy_plugins.degpt.chat import STYLE as DEGPT
from ds2proxy_plugins.lm.chat import STYLE as LM

MODEL = ResolvedModel(requested="deepseek-chat", native="deepseek-chat", model_type="default",
                      thinking=False, search=False)
TEXTS = ["plain", 'quote " and \\ back', "line\nbreak", "ünï✓ 😀", "\x00text"]


DELTAS = [(TextDelta, "content", TEXTS), (ReasoningDelta, "reasoning_content", [*TEXTS, ""])]


@pytest.mark.parametrize(("delta", "field", "texts", "style"), [
    *((delta, field, texts, style) for delta, field, texts in DELTAS
      for style in (ChatStyle(), DEGPT)),
    (TextDelta, "content", TEXTS, LM),  # lm has no reasoning field
], ids=["text-openai", "text-degpt", "reasoning-openai", "reasoning-degpt", "text-lm"])
@pytest.mark.parametrize("include_usage", [False, True])
def test_delta_chunks_match_the_general_path(delta, field, texts, style, include_usage):
    chat = ChatRequest(model=MODEL, messages=[Message("user", [TextPart("hi")])], stream=True,
                       include_usage=include_usage)
    renderer = ChatStreamRenderer(chat, "turn-1", 1700000000, style)
    first = renderer.frames(delta("start"))
    assert all(isinstance(frame, dict) for frame in first)  # the opening goes the long way
    for text in texts:
        [frame] = renderer.frames(delta(text))
        assert isinstance(frame, bytes)
        assert frame == orjson.dumps(renderer._chunk({field: text}))
    renderer.frames(ToolCallStart(0, "call_1", "read"))  # a pending call: the long way
    assert all(isinstance(f, dict) for f in renderer.frames(ReasoningDelta("after")))


def test_inline_reasoning_takes_the_long_way():
    chat = ChatRequest(model=MODEL, messages=[Message("user", [TextPart("hi")])], stream=True)
    renderer = ChatStreamRenderer(chat, "turn-1", 1700000000, LM)
    renderer.frames(ReasoningDelta("a"))
    [frame] = renderer.frames(ReasoningDelta("b"))
    assert frame == renderer._chunk({"content": "b"})


EVENTS = [ReasoningDelta("think"), TextDelta("a"), TextDelta("b"), ReasoningDelta("more"),
          TextDelta("c"), ToolCallStart(0, "call_1", "read"), ToolCallArgs(0, "{}"),
          TextDelta("after"), TextDelta(""), Usage(3, 4), Finish("stop")]


@pytest.mark.parametrize("style", [ChatStyle(), DEGPT, LM], ids=["openai", "degpt", "lm"])
@pytest.mark.parametrize("cut", [1, 2, 3, 5, len(EVENTS)])
@pytest.mark.parametrize("events", [EVENTS, EVENTS[1:]], ids=["reasoning-first", "text-first"])
def test_a_batch_renders_as_its_events_one_by_one(style, cut, events):
    """``frames_of`` (the relay's batch path) against ``frames`` per event,
    from a fresh renderer each, over batches cut at ``cut`` events."""
    chat = ChatRequest(model=MODEL, messages=[Message("user", [TextPart("hi")])], stream=True,
                       include_usage=True)
    single = ChatStreamRenderer(chat, "turn-1", 1700000000, style)
    batched = ChatStreamRenderer(chat, "turn-1", 1700000000, style)
    one_by_one = [frame for event in events for frame in single.frames(event)]
    in_batches = [frame for at in range(0, len(events), cut)
                  for frame in batched.frames_of(events[at:at + cut])]
    assert in_batches == one_by_one


# -- runs of text deltas (TextRun in, PayloadRun out) ----------------------------

ODD = ["", ",", '"', '","', '",', ',"', "\\", '\\"', "a\\", "[", "]", "\n", "\x00", "ü😀",
       "\u2028", "data: ", "x" * 300]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(ODD), st.text(max_size=8)), min_size=1, max_size=30),
       st.sampled_from([b"\n\ndata: ", b",", b""]))
def test_a_payload_run_joins_as_its_payloads(texts, sep):
    """The one-encode join against the payloads one by one, whatever the
    texts hold (quotes, commas, backslashes: what the boundary could be
    mistaken for)."""
    run = PayloadRun(b'{"a":[{"c":', b'}],"z":null}', texts)
    payloads = run.payloads()
    assert payloads == [b'{"a":[{"c":' + orjson.dumps(t) + b'}],"z":null}' for t in texts]
    assert run.joined(sep) == sep.join(payloads)
    assert run.joined(sep, b"<", b">") == b"<" + sep.join(payloads) + b">"


def sse_bytes(frames: list) -> bytes:
    writer = SSEWriter.__new__(SSEWriter)  # encoding only: no request needed
    return b"".join(writer.encode(frame) for frame in frames)


RUN_EVENTS = [ReasoningDelta("think"), TextDelta("a"), TextDelta(","), ReasoningDelta("more"),
              ToolCallStart(0, "call_1", "read"), TextDelta('"q"'), TextDelta("b"),
              ToolCallArgs(0, "{}"), TextDelta("c"), TextDelta("\\"), TextDelta("d"),
              Usage(3, 4), Finish("stop")]


@pytest.mark.parametrize("style", [ChatStyle(), DEGPT, LM], ids=["openai", "degpt", "lm"])
@pytest.mark.parametrize("cut", [1, 2, 3, 4, len(RUN_EVENTS)])
@pytest.mark.parametrize("start", [0, 1])
def test_text_runs_render_as_their_deltas(style, cut, start):
    """Consecutive text deltas handed over as TextRuns (at the start, after
    reasoning, around a pending call) give the bytes of the deltas one by one."""
    events = RUN_EVENTS[start:]
    chat = ChatRequest(model=MODEL, messages=[Message("user", [TextPart("hi")])], stream=True,
                       include_usage=True)
    single = ChatStreamRenderer(chat, "turn-1", 1700000000, style)
    batched = ChatStreamRenderer(chat, "turn-1", 1700000000, style)
    expected = sse_bytes([frame for event in events for frame in single.frames(event)])
    got = []
    for at in range(0, len(events), cut):
        batch, texts = [], []
        for event in events[at:at + cut] + [None]:
            if type(event) is TextDelta:
                texts.append(event.text)
                continue
            if texts:
                batch.append(TextRun(texts))
                texts = []
            if event is not None:
                batch.append(event)
        got += batched.frames_of(batch) if len(batch) > 1 else batched.frames(batch[0])
    assert any(type(frame) is PayloadRun for frame in got)
    assert sse_bytes(got) == expected
