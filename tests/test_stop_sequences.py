"""Stop sequences, enforced by the proxy in every family.

The matcher's property: whatever fragments the text arrives in, the text let
through is exactly ``text[:first match]``, and it never holds back more than
a partial match needs. Then end to end through the official clients, with
matches split across upstream fragments, stream and non-stream: the answer
ends right before the match, reasoning is not cut, a tool call is not split,
the finish is the family's, and the lease is free once the answer is out.
"""

from __future__ import annotations

import json

import aiohttp
import anthropic
import openai
import pytest
from dsml_util import dsml
from google.genai import types
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_claude_sdk import ask, texts
from test_gemini_client import collect, generate

from ds2proxy.canonical import ChatRequest, Finish, ReasoningDelta, ResolvedModel, TextDelta
from ds2proxy.errors import InvalidRequest
from ds2proxy.shaping import ShapingSettings, TurnShaper
from ds2proxy.stops import LONG_STOP, StopMatcher, parse_stops
from ds2proxy.testing import Scripted
from ds2proxy.testing.clients import openai_client
from token_util import reference_tokens

ALPHABET = "abcEND \n"
SPLIT_ANSWER = ["Hello wor", "ld E", "N", "D and then more text ", "that must not show."]
READ_TOOL = {"type": "function", "function": {
    "name": "read_file", "description": "Read a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                   "required": ["path"]}}}


def first_cut(text: str, stops: list[str]) -> str:
    found = [text.find(s) for s in stops if s in text]
    return text[:min(found)] if found else text


@st.composite
def split_text(draw) -> tuple[list[str], list[str]]:
    text = draw(st.text(alphabet=ALPHABET, max_size=60))
    stops = draw(st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), min_size=1,
                          max_size=4))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    return pieces, stops


@settings(max_examples=500, deadline=None)
@given(split_text())
def test_cut_text_is_the_text_before_the_first_match(case):
    assert_cut_before_the_first_match(*case)


def assert_cut_before_the_first_match(pieces: list[str], stops: list[str]) -> None:
    text = "".join(pieces)
    matcher = StopMatcher(tuple(stops))
    out = []
    for piece in pieces:
        out.append(matcher.feed(piece))
        fed = "".join(pieces[:len(out)])
        if matcher.matched is None:
            # Live: only a possible start of a match is held back.
            held = len(fed) - len("".join(out))
            assert held < max(map(len, stops))
    out.append(matcher.flush())
    assert "".join(out) == first_cut(text, stops)
    assert (matcher.matched is not None) == any(s in text for s in stops)


@st.composite
def long_split_text(draw) -> tuple[list[str], list[str]]:
    """Stop sequences long enough to be followed incrementally, made of a
    repeated unit (maybe with another last character), so many of their
    prefixes are also their suffixes; the text mixes prefixes of them."""
    unit = st.text(alphabet="ab\n", min_size=1, max_size=3)
    stops = []
    for repeated in draw(st.lists(unit, min_size=1, max_size=3)):
        stop = (repeated * 64)[:draw(st.integers(LONG_STOP, LONG_STOP + 30))]
        stops.append(stop[:-1] + draw(st.sampled_from("abc\n")))
    parts = draw(st.lists(st.one_of(st.text(alphabet="abc\n", max_size=20),
                                    st.sampled_from(stops).flatmap(
                                        lambda s: st.integers(1, len(s)).map(lambda n: s[:n]))),
                          max_size=8))
    text = "".join(parts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=20)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])], stops


@settings(max_examples=300, deadline=None)
@given(long_split_text())
def test_long_self_similar_stops_cut_before_the_first_match_too(case):
    assert_cut_before_the_first_match(*case)


class Counted(str):
    """A stop sequence that counts the characters compared against it."""

    compared = 0

    def startswith(self, prefix, *args) -> bool:  # type: ignore[override]
        Counted.compared += len(prefix)
        return super().startswith(prefix, *args)


def test_long_stops_cost_the_same_per_character_whatever_their_length():
    # 16 stop sequences of 1000 characters, each a long run of "a" then
    # "b"s, against an answer of "a"s: every fragment left the tail check
    # trying each place an "a" begins, about 600 characters compared per
    # character of answer and stop (seconds of event loop per answer with
    # more stops); followed incrementally, a handful.
    Counted.compared = 0
    stops = tuple(Counted("a" * (300 + i) + "b" * (699 - i)) for i in range(16))
    matcher = StopMatcher(stops)
    text = "a" * 3000
    out = "".join(matcher.feed(text[at:at + 8]) for at in range(0, len(text), 8))
    assert out + matcher.flush() == text
    assert Counted.compared <= 32 * len(text) * len(stops)


def test_parse_stops_rules():
    assert parse_stops("END", param="stop", max_count=4) == ["END"]
    assert parse_stops(["a", "b", "a"], param="stop", max_count=4) == ["a", "b"]
    assert parse_stops(None, param="stop", max_count=4) == []
    for bad in (3, ["a", 1], [""], ["x"] * 5, ["y" * 1001], {"a": 1}):
        with pytest.raises(InvalidRequest) as info:
            parse_stops(bad, param="stop", max_count=4)
        assert info.value.param == "stop"


# -- OpenAI ---------------------------------------------------------------------


async def test_openai_non_stream_cuts_before_a_split_match(proxy):
    proxy.fake.enqueue(Scripted(thinking="I think END is fine.", answer=SPLIT_ANSWER))
    resp = await openai_client(proxy).chat.completions.create(
        model="deepseek-reasoner", messages=[{"role": "user", "content": "hi"}], stop="END")
    assert resp.choices[0].message.content == "Hello world "
    assert resp.choices[0].message.model_extra["reasoning_content"] == "I think END is fine."
    assert resp.choices[0].finish_reason == "stop"
    assert proxy.core.pool.inflight == 0


async def test_openai_stream_cuts_and_stays_live(proxy):
    proxy.fake.enqueue(Scripted(answer=SPLIT_ANSWER))
    stream = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hi"}],
        stop=["zzz", "END"], stream=True)
    deltas, finish = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            deltas.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert "".join(deltas) == "Hello world "
    # Text with no possible match went out before the matching fragment arrived.
    assert deltas[0] == "Hello wor"
    assert finish == "stop"
    assert proxy.core.pool.inflight == 0


async def test_openai_tool_call_is_never_cut(proxy):
    call = dsml(("read_file", {"path": "/tmp/END.txt"}))
    proxy.fake.enqueue(Scripted(answer="Reading.\n\n" + call, chunk_size=5))
    resp = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "read it"}],
        tools=[READ_TOOL], stop=["END"])
    calls = resp.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments) for c in calls] == [{"path": "/tmp/END.txt"}]
    assert resp.choices[0].finish_reason == "tool_calls"


AFTER_CALL = ("Reading.\n\n" + dsml(("read_file", {"path": "/tmp/a.txt"}))
              + "\nI will wait. END of turn")


async def test_a_stop_matched_after_a_call_still_finishes_with_the_call(proxy):
    """Text after a call may hold a stop sequence: the turn still ends in
    tool_calls / tool_use (the client must run the call), with no stop
    sequence named; it used to finish "stop" / "stop_sequence"."""
    proxy.fake.enqueue(Scripted(answer=AFTER_CALL, chunk_size=4),
                       Scripted(answer=AFTER_CALL, chunk_size=4))
    stream = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "read it"}],
        tools=[READ_TOOL], stop=["END"], stream=True)
    finishes = [c.choices[0].finish_reason async for c in stream if c.choices]
    assert [f for f in finishes if f] == ["tool_calls"]
    message = await ask(proxy, "async", True, stop_sequences=["END"], tools=[{
        "name": "read_file", "input_schema": READ_TOOL["function"]["parameters"]}])
    assert [b.type for b in message.content if b.type != "thinking"][-2:] == ["tool_use", "text"]
    assert texts(message).endswith("I will wait. ")
    assert message.stop_reason == "tool_use" and message.stop_sequence is None


@pytest.mark.parametrize("stop", [["a", "b", "c", "d", "e"], [""], [1], "", {"x": 1}])
async def test_openai_bad_stop_is_a_400_before_any_account(proxy, stop):
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(proxy).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hi"}], stop=stop)
    assert info.value.body["param"] == "stop"
    assert proxy.fake.calls_to("chat/completion") == []


# -- Anthropic ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_stop_sequence_reason_and_field(proxy, stream):
    proxy.fake.enqueue(Scripted(thinking="thinking about END", answer=SPLIT_ANSWER))
    message = await ask(proxy, "async", stream, stop_sequences=["nope", "END"])
    assert texts(message) == "Hello world "
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "END"
    thinking = [b.thinking for b in message.content if b.type == "thinking"]
    assert thinking == ["thinking about END"]
    assert proxy.core.pool.inflight == 0


async def test_anthropic_without_a_match_ends_the_turn_normally(proxy):
    proxy.fake.enqueue(Scripted(answer="no stop word here, just E"))
    message = await ask(proxy, "async", True, stop_sequences=["END"])
    assert texts(message) == "no stop word here, just E"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None


async def test_anthropic_bad_stop_sequences_are_a_400(proxy):
    with pytest.raises(anthropic.BadRequestError) as info:
        await ask(proxy, "async", False, stop_sequences=["ok", 7])
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "stop_sequences" in info.value.body["error"]["message"]


# -- Gemini ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_stop_sequences_cut_with_finish_stop(proxy, stream):
    proxy.fake.enqueue(Scripted(answer=SPLIT_ANSWER))
    config = types.GenerateContentConfig(stop_sequences=["END"])
    responses = await generate(proxy, "async", stream, model="gemini-2.5-flash",
                               contents="hi", config=config)
    _, text, _, finishes = collect(responses)
    assert text == "Hello world "
    assert finishes[-1] == types.FinishReason.STOP
    assert proxy.core.pool.inflight == 0


async def test_gemini_too_many_stop_sequences_is_invalid_argument(proxy):
    body = {"contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"stopSequences": list("abcdef")}}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{proxy.url}/v1beta/models/gemini-2.5-flash:generateContent",
                             json=body, headers={"x-goog-api-key": proxy.key}) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
    assert error["status"] == "INVALID_ARGUMENT" and "stopSequences" in error["message"]


# -- the smaller dialects ----------------------------------------------------------


async def raw_chat(proxy, path: str, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + path, json=body, headers=proxy.headers()) as resp:
            return resp.status, await resp.json()


async def test_lm_v2_names_a_stop_cut_stop_and_a_natural_end_normal(proxy):
    proxy.fake.enqueue(Scripted(answer=SPLIT_ANSWER), Scripted(answer="plain answer"))
    messages = [{"role": "user", "content": "hi"}]
    status, cut = await raw_chat(proxy, "/lm/v2/chat/completions",
                                 {"model": "deepseek-chat", "messages": messages, "stop": "END"})
    assert status == 200
    assert cut["choices"][0]["message"]["content"] == "Hello world "
    assert cut["choices"][0]["finish_reason"] == "stop"
    status, whole = await raw_chat(proxy, "/lm/v2/chat/completions",
                                   {"model": "deepseek-chat", "messages": messages,
                                    "stop": "END"})
    assert whole["choices"][0]["finish_reason"] == "normal"


async def test_api_v1_chat_enforces_stop(proxy):
    proxy.fake.enqueue(Scripted(answer=SPLIT_ANSWER))
    status, body = await raw_chat(proxy, "/api/v1/chat/completions",
                                  {"model": "auto", "stop": ["END"],
                                   "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "Hello world "
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_a_match_ends_the_turn_without_reading_further_rounds(proxy):
    """The first round ends INCOMPLETE after the match: without a stop the
    proxy asks the upstream to continue, with one it reads no further."""
    answer = ["Part one E", "ND here", " and ", "the rest ", "of it."]
    proxy.fake.enqueue(Scripted(answer=answer, incomplete_after=3),
                       Scripted(answer=answer, incomplete_after=3))
    client = openai_client(proxy)
    whole = await client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "go"}])
    assert whole.choices[0].message.content == "".join(answer)
    assert len(proxy.fake.calls_to("chat/continue")) == 1
    cut = await client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "go"}], stop="END")
    assert cut.choices[0].message.content == "Part one "
    assert len(proxy.fake.calls_to("chat/continue")) == 1
    assert proxy.core.pool.inflight == 0


@settings(max_examples=200, deadline=None)
@given(split_text())
def test_the_shaper_cuts_answer_text_the_same_way(case):
    """Through the real shaping path (citation rewriter, text cleaner): the
    answer text out is the text before the first match, and reasoning is whole
    (an answer of whitespace alone that no match ended gives none: the
    pipeline asks again, and the blank never goes before the new answer)."""
    pieces, stops = case
    model = ResolvedModel("deepseek-reasoner", "deepseek-reasoner", "default", True, False)
    chat = ChatRequest(model=model, messages=[], sampling={"stop": stops})
    shaper = TurnShaper(chat, ShapingSettings(), 1, list)
    events = shaper.on_reasoning("END of reasoning")
    for piece in pieces:
        events += shaper.on_answer(piece)
        if shaper.stopped:
            break
    events += shaper.flush() + shaper.tail()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    expected = first_cut("".join(pieces), stops)
    if shaper.stop_sequence is None and not expected.strip():
        expected = ""
    assert text == expected
    assert [e.text for e in events if isinstance(e, ReasoningDelta)] == ["END of reasoning"]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    assert finish.stop_sequence == shaper.stop_sequence
    assert (finish.stop_sequence is not None) == any(s in "".join(pieces) for s in stops)


def shaped(pieces: list[str], stops: list[str]) -> tuple[TurnShaper, list]:
    """The answer ``pieces`` through a fresh shaper, stopping at a match."""
    model = ResolvedModel("deepseek-chat", "deepseek-chat", "default", False, False)
    shaper = TurnShaper(ChatRequest(model=model, messages=[], sampling={"stop": stops}),
                        ShapingSettings(), 0, list)
    events = []
    for piece in pieces:
        events += shaper.on_answer(piece)
        if shaper.stopped:
            break
    return shaper, events + shaper.flush()


@settings(max_examples=300, deadline=None)
@given(split_text())
@example((["DEE"], ["E", "DED"]))  # "DE" held for "DED"; the second "E" decides
@example((["\n \n"], [" ", "DD"]))  # "\n " counts 2 tokens, "\n \n" one
# "D" complete but held for "aDD" at the chunk's end: the next chunk's "E" decides
@example((["EEEEEEEEaD", "ED"], ["D", "aDD"]))
def test_usage_counts_the_answer_up_to_the_end_of_the_match(case):
    """Usage counts what the model wrote up to and with the stop sequence it
    stopped on (it wrote that too, and the official APIs count it), never
    the text after it, however many tokens each upstream chunk carries: the
    same as the text sent a character at a time (where a longer sequence
    that began earlier may hold the decision a few characters on)."""
    pieces, stops = case
    text = "".join(pieces)
    shaper, events = shaped(pieces, stops)
    by_char, _ = shaped(list(text), stops)
    assert shaper.usage().completion_tokens == by_char.usage().completion_tokens
    if shaper.stop_sequence is None:
        assert shaper.usage().completion_tokens == reference_tokens(text)
        return
    cut = text.find(shaper.stop_sequence)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == text[:cut]
    # The count is that of the text up to the match's end or, where a longer
    # sequence held the decision, a few characters on: some prefix's count
    # (prefix counts are not monotonic: "\n " is 2 tokens, "\n \n" one).
    end = cut + len(shaper.stop_sequence)
    longest = max(map(len, stops))
    counted = {reference_tokens(text[:k])
               for k in range(end, min(len(text), end + longest - 1) + 1)}
    assert shaper.usage().completion_tokens in counted


def test_a_match_spread_over_three_chunks_ends_the_count_too():
    """The text kept to find a stop sequence that began in earlier chunks
    is its length less one, even when those chunks were shorter."""
    shaper, _ = shaped(["zz", "ab", "cdef and a tail that is not counted"], ["abcdef"])
    assert shaper.stop_sequence == "abcdef"
    assert shaper.usage().completion_tokens == reference_tokens("zzabcdef")


@pytest.mark.parametrize("stream", [False, True])
async def test_text_after_the_match_in_the_same_chunk_is_not_counted(proxy, stream):
    """One upstream chunk with the match and a long tail after it counts as
    the same answer sent token by token (which ends at the match)."""
    answer = "The answer is 42. END " + "and then a long tail nobody sees. " * 40
    usage = []
    for chunks in ([answer], list(answer)):
        proxy.fake.enqueue(Scripted(answer=chunks))
        kwargs = {"stream_options": {"include_usage": True}} if stream else {}
        resp = await openai_client(proxy).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hi"}], stop="END",
            stream=stream, **kwargs)
        if stream:
            chunks_out = [c async for c in resp]
            text = "".join(c.choices[0].delta.content or "" for c in chunks_out if c.choices)
            usage.append(chunks_out[-1].usage.completion_tokens)
        else:
            text = resp.choices[0].message.content
            usage.append(resp.usage.completion_tokens)
        assert text == "The answer is 42. "
    assert usage == [reference_tokens("The answer is 42. END")] * 2
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("path", ["/lm/v2/chat/completions", "/api/v1/chat/completions"])
async def test_small_dialects_refuse_a_bad_stop_in_their_shape(proxy, path):
    status, body = await raw_chat(proxy, path, {
        "model": "deepseek-chat", "stop": ["a", "b", "c", "d", "e"],
        "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400
    assert body["error"]["param"] == "stop" and body["error"]["type"] == "invalid_request_error"
    assert proxy.fake.calls_to("chat/completion") == []
