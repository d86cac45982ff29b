"""The token fast path of the older flat stream form (``response/content``,
``response/thinking_content`` followed by path-less tokens, spec §10.8)
yields exactly what the general path yields.

The recordings are re-sent in that form (the same reasoning and answer, a
root snapshot opening each continue round) and random, long and adversarial
flat streams are parsed with the fast path on and off, line by line and
read by read (see ``assert_same``); each test checks the fast path ran.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ds2proxy.testing import Replay, Scripted
from ds2proxy.testing.clients import openai_client
from ds2proxy.testing.recordings import load_rounds
from ds2proxy.testing.reconstruct import reconstruct
from ds2proxy.upstream import fast_tokens, stream_text
from ds2proxy.upstream.events import StatusChanged, TextChunk
from ds2proxy.upstream.lines import LineCutter
from ds2proxy.upstream.patch_ops import LEGACY_ANSWER, LEGACY_THINKING
from ds2proxy.upstream.stream_parser import StreamParser
from ds2proxy.upstream.stream_text import split_think_tags
from test_stream_fastpath import RECORDINGS, assert_same, body, frag, parse

FIELD = {"thinking": LEGACY_THINKING, "answer": LEGACY_ANSWER}
READY = ["event: ready", {"request_message_id": 1, "response_message_id": 2}]
FINISHED = {"p": "response/status", "o": "SET", "v": "FINISHED"}


def flat_rounds(rounds: Sequence[bytes]) -> list[bytes]:
    """A recording's rounds in the flat form: each round's text as tokens
    on the flat fields (every 40th naming its path and op), a continue
    round opened by a snapshot of all the text so far, the round's status."""
    whole = reconstruct([])
    out: list[bytes] = []
    sent = {"thinking": "", "answer": ""}
    for n, round_body in enumerate(rounds):
        start = len(whole.events)
        whole.feed_round(round_body)
        frames: list[Any] = list(READY)
        if n:
            frames.append({"v": {"response": {"message_id": 2, "status": "WIP",
                                              "thinking_content": sent["thinking"],
                                              "content": sent["answer"]}}})
        kind = None
        for i, event in enumerate(whole.events[start:]):
            if isinstance(event, TextChunk):
                sent[event.kind] += event.text
                if event.kind != kind:
                    frames.append({"p": FIELD[event.kind], "v": event.text})
                elif i % 40 == 0:
                    frames.append({"p": FIELD[event.kind], "o": "APPEND", "v": event.text})
                else:
                    frames.append({"v": event.text})
                kind = event.kind
            elif isinstance(event, StatusChanged):
                frames.append({"p": "response/status", "v": event.status})  # op stays unset
        out.append(body(*frames))
    return out


@pytest.mark.parametrize("name", RECORDINGS)
def test_recordings_in_the_flat_form_parse_identically(fixtures_dir: Path, name: str) -> None:
    folder = fixtures_dir / "deepseek-sse" / name
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    fast = assert_same(flat_rounds(load_rounds(folder)), min_taken=100)
    assert (fast.thinking, fast.answer) == (expected["thinking"], expected["content"])
    assert fast.parser.taken >= sum(isinstance(e, TextChunk) for e in fast.events) * 0.8


def test_reasoning_then_answer_flat_tokens_take_the_fast_path() -> None:
    fast = assert_same([body(*READY, {"p": LEGACY_THINKING, "v": "I "},
                             *({"v": f"think{i} "} for i in range(200)),
                             {"p": LEGACY_ANSWER, "v": "So "},
                             *({"v": f"say{i} "} for i in range(200)), FINISHED)])
    assert fast.parser.taken >= 398
    assert fast.answer == "So " + "".join(f"say{i} " for i in range(200))


# -- adversarial flat streams ----------------------------------------------------

WORDS = ["a", " ", "\n", "ü", "😀", "\u2028", "\\", '"', "", "<think>", "</think>", "<thi",
         "nk>", ">", "</", "think>", "x>y", "CONTENT_FILTER", "CONTENT_", "FILTER",
         "so CONTENT_FILTER", "\t", "x" * 3000]


def word(rng: random.Random) -> str:
    return rng.choice(WORDS) if rng.random() < 0.3 else f"w{rng.randint(0, 99)} "


def flat_frame(rng: random.Random) -> Any:
    """One frame of a flat stream: mostly path-less tokens, else a path
    switch, a SET, an object value, a snapshot, a BATCH, a fragment, a
    status, a filter or an event line."""
    roll = rng.random()
    field = rng.choice([LEGACY_ANSWER, LEGACY_THINKING])
    if roll < 0.62:
        return {"v": word(rng)}
    if roll < 0.72:
        return {"p": field, "v": word(rng)}
    if roll < 0.76:
        return {"p": field, "o": rng.choice(["APPEND", "SET"]), "v": word(rng)}
    if roll < 0.79:
        return rng.choice([{"v": {"text": word(rng)}}, {"p": field, "v": {"content": word(rng)}},
                           {"p": field, "v": 5}, {"v": None}, {"p": field, "v": ["x"]}])
    if roll < 0.82:
        return {"v": {"response": {"thinking_content": "<think>" * rng.randint(0, 1) + "t" * 5,
                                   "content": "a" * rng.randint(0, 8)}}}
    if roll < 0.85:
        sub = rng.choice(["content", "thinking_content", LEGACY_ANSWER])
        return {"p": "response", "o": "BATCH", "v": [{"p": sub, "v": word(rng)},
                                                      {"p": "accumulated_token_usage", "v": 3}]}
    if roll < 0.87:
        return {"p": "response/fragments", "o": "APPEND",
                "v": [frag(rng.randint(1, 3), rng.choice(["THINK", "RESPONSE"]), "f")]}
    if roll < 0.9:
        return {"p": "response/status", "o": "SET", "v": rng.choice(["WIP", "INCOMPLETE"])}
    if roll < 0.91:
        return rng.choice([{"code": "content_filter"},
                           {"p": "response/status", "v": "CONTENT_FILTER"}])
    if roll < 0.94:
        return rng.choice(["event: update_session", ": comment", "data: {broken", "",
                           {"p": "response", "o": "SET", "v": {"content": None}}])
    return {"p": "response/search_status", "o": "SET", "v": "SEARCHING"}


def flat_round(rng: random.Random, frames: int) -> bytes:
    out: list[Any] = [*READY, {"p": rng.choice([LEGACY_ANSWER, LEGACY_THINKING]), "v": "start"}]
    out += [flat_frame(rng) for _ in range(frames)]
    return body(*out, FINISHED)


@pytest.mark.parametrize("thinking", [True, False])
def test_random_flat_streams_parse_identically(thinking: bool) -> None:
    rng = random.Random(20260405 + thinking)
    taken = 0
    for _ in range(150):
        rounds = [flat_round(rng, rng.randint(5, 80)) for _ in range(rng.randint(1, 3))]
        taken += assert_same(rounds, thinking=thinking, min_taken=0).parser.taken
    assert taken > 1000


def test_think_tags_split_across_flat_tokens() -> None:
    """Tags complete only with a ``>``; the reasoning is split there (text
    after ``</think>`` is answer), on the fast path as on the general one."""
    fast = assert_same([body(*READY, {"p": LEGACY_THINKING, "v": "<think>a"}, {"v": "b"},
                             {"v": "c"}, {"v": "</think"}, {"v": ">"}, {"v": "d"}, {"v": "e"},
                             {"p": LEGACY_ANSWER, "v": "f"}, {"v": "g"}, FINISHED)])
    assert (fast.thinking, fast.answer) == ("abc", "defg")
    assert fast.parser.taken >= 7


SPLIT_TAGS = [*READY, {"p": LEGACY_THINKING, "v": "a"}, {"v": "<thi"}, {"v": "nk"}, {"v": ">b"},
              {"v": "c"}, {"v": " x <"}, {"v": " y"}, {"v": "</th"}, {"v": "ink>d"},
              {"v": " <"}, FINISHED]


def test_a_think_tag_cut_into_tokens_is_dropped_like_a_whole_one() -> None:
    """``<thi`` + ``nk`` + ``>b``: the tag never reaches the client and no
    text after it is lost; a "<" that starts no tag is shown once the next
    token tells (and at the round's end, before its status)."""
    fast = assert_same([body(*SPLIT_TAGS)], min_taken=0)
    texts = [(e.kind, e.text) for e in fast.events if isinstance(e, TextChunk)]
    assert "".join(t for k, t in texts if k == "thinking") == "abc x < y"
    assert "".join(t for k, t in texts if k == "answer") == "d <"
    assert not any("<thi" in t or "nk" in t or "</th" in t for _, t in texts)
    assert isinstance(fast.events[-1], StatusChanged) and texts[-1] == ("answer", "<")


def test_held_reasoning_goes_out_when_the_answer_starts() -> None:
    """Reasoning ending in "<" is held back while a token may still make it
    a tag; the answer's first text ends the reasoning, so the "<" goes out
    before it, not after the whole answer at the status."""
    fast = assert_same([body(*READY, {"p": LEGACY_THINKING, "v": "abc"}, {"v": "<"},
                             {"p": LEGACY_ANSWER, "v": "X"}, {"v": "Y"}, {"v": "Z"}, FINISHED)])
    texts = [(e.kind, e.text) for e in fast.events if isinstance(e, TextChunk)]
    assert texts == [("thinking", "abc"), ("thinking", "<"), ("answer", "X"), ("answer", "Y"),
                     ("answer", "Z")]


@pytest.mark.parametrize("first", ["<think>I ", "I </think>So ", "<think>I</think>So "])
def test_flat_reasoning_holding_think_tags_takes_the_fast_path(first: str) -> None:
    """Reasoning that holds a tag (the old model bug, spec §10.8) went the
    general way token after token, each re-splitting the whole field: 20,000
    tokens held the loop ~225 µs each. Every token now takes the fast path,
    "<" tokens and a tag cut between tokens too, with the same events (a
    leaked marker, which ends the answer, still goes the general way: the
    random streams above have those)."""
    words = [f"w{i} " if i % 97 else rng_word(i) for i in range(3000)]
    fast = assert_same([body(*READY, {"p": LEGACY_THINKING, "v": first},
                             *({"v": w} for w in words), FINISHED)], min_taken=0)
    assert fast.parser.taken == 3000
    whole = first + "".join(words)
    assert (fast.thinking, fast.answer) == split_think_tags(whole)


def rng_word(i: int) -> str:
    """Every 97th token: something the fast path must leave to the general one."""
    return ["<", "</th", "ink>", "<think>", "x<y ", "</think>"][i % 6]


# Reasoning whose tags and "<" fall anywhere: each text is cut into three
# tokens at every pair of places (tag pieces like "<thi", "</", "</think" end
# one token and start the next), then more tokens come, to the reasoning,
# or after the answer started (the reasoning is then complete).
TAG_TEXTS = ["a<think>b</think>c", "<think>x</think>y</think>z<think>w", "p</th<think>ink>q",
             "</<think>think>r<", "<thi<think>nk>s</", "x<y</think>CONTENT_FILTER z<thi",
             "<<think>/think>t", "</think<think>>u<think</think>>v", "<div>a</div><br/>"]


def cut_three_ways(text: str) -> list[list[str]]:
    return [[text[:i], text[i:j], text[j:]]
            for i in range(len(text) + 1) for j in range(i, len(text) + 1)]


@pytest.mark.parametrize("text", TAG_TEXTS)
def test_tag_pieces_cut_at_every_place_parse_identically(text: str) -> None:
    after = [[{"v": "nk>"}, {"v": " <"}], [{"p": LEGACY_ANSWER, "v": "A"}, {"v": "B"}],
             [{"p": LEGACY_ANSWER, "v": "A"}, {"p": LEGACY_THINKING, "v": "ink>"}, {"v": "<t"}],
             [{"p": "response/status", "v": "INCOMPLETE"}, {"p": LEGACY_THINKING, "v": "ink>"}]]
    taken = 0
    for n, tokens in enumerate(cut_three_ways(text)):
        frames = [{"p": LEGACY_THINKING, "v": "s"}, *({"v": t} for t in tokens), *after[n % 4]]
        fast = assert_same([body(*READY, *frames, FINISHED)], min_taken=0)
        taken += fast.parser.taken
    assert taken >= len(cut_three_ways(text)) * 2  # a leaked marker goes the general way


TAG_PIECES = ["<", "</", "<thi", "</think", "<think>", "</think>", "nk>", "ink>", ">", "k",
              "<div> ", "a<b", "</th<think>i", "CONTENT_", "FILTER", "", "x" * 40]


@pytest.mark.parametrize("seed", range(4))
def test_long_reasoning_of_tag_pieces_parses_identically(seed: int) -> None:
    """Thousands of tokens, most a "<" or a tag piece, now and then a
    status or a snapshot; at the end a turn to the answer and back (the
    reasoning is then complete: its "<" tokens go the general way)."""
    rng = random.Random(seed)
    frames: list[Any] = [*READY, {"p": LEGACY_THINKING, "v": "start"}]
    for _ in range(3000):
        roll = rng.random()
        if roll < 0.008:
            frames.append(rng.choice([
                {"p": "response/status", "v": "INCOMPLETE"},
                {"p": "response", "o": "BATCH", "v": [{"p": "accumulated_token_usage", "v": 3}]},
                {"v": {"response": {"thinking_content": "<think>t<", "content": ""}}}]))
            frames.append({"p": LEGACY_THINKING, "o": "APPEND", "v": rng.choice(TAG_PIECES)})
        else:
            frames.append({"v": rng.choice(TAG_PIECES) if roll < 0.8 else f"w{rng.randint(0, 9)} "})
    frames += [{"p": LEGACY_ANSWER, "v": "A"}, {"p": LEGACY_THINKING, "v": "B"},
               *({"v": rng.choice(TAG_PIECES)} for _ in range(30))]
    fast = assert_same([body(*frames, FINISHED)], min_taken=0)
    assert fast.parser.taken >= 2500


class ReadCountingParser(StreamParser):
    """Counts the general path's lines and the characters of the flat
    reasoning field it re-reads whole (per token, that is the quadratic)."""

    general = 0
    read = 0

    def _general(self, payload: Any, event: str, out: list) -> None:
        self.general += 1
        super()._general(payload, event, out)


def test_html_in_flat_reasoning_costs_the_same_per_token_at_any_length(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``<div> `` every 5th of 20,000 reasoning tokens: each of those went the
    general way, which re-split the whole field (~65 µs a token on average,
    growing with the length). Now only the raw end held as a possible tag is
    looked at again: the field is read whole a bounded number of times, not
    once per "<" token."""
    parser = ReadCountingParser()

    def counted(real: Any) -> Any:
        def read(text: str, *args: Any, **kwargs: Any) -> Any:
            parser.read += len(text)
            return real(text, *args, **kwargs)
        return read

    monkeypatch.setattr(stream_text, "split_think_tags", counted(stream_text.split_think_tags))
    monkeypatch.setattr(fast_tokens, "tags_of", counted(fast_tokens.tags_of))
    tokens = [{"v": "<div> " if n % 5 == 0 else f"t{n % 10} "} for n in range(20_000)]
    cutter = LineCutter(for_parser=True)
    data = body(*READY, {"p": LEGACY_THINKING, "v": "x"}, *tokens, FINISHED)
    events: list[Any] = []
    parser.start_round()
    for at in range(0, len(data), 4096):
        events += parser.feed_lines(cutter.cut(data[at:at + 4096]))
    events += parser.feed_lines(cutter.rest()) + parser.finish()
    thinking = "".join(e.text for e in events if isinstance(e, TextChunk))
    assert thinking == "x" + "".join(t["v"] for t in tokens)
    assert parser.general <= 5
    assert parser.read <= 4 * len(thinking)


def test_long_flat_stream_parses_identically() -> None:
    """10,000 reasoning and 40,000 answer tokens on the flat fields (the
    general path re-reads the whole field per token: more would take long),
    with the odd word and, now and then, a patch elsewhere."""
    rng = random.Random(4)
    odd = [w for w in WORDS if "think" not in w and ">" not in w and "_FILTER" not in w]
    frames: list[Any] = [*READY]
    for field, tokens in ((LEGACY_THINKING, 10_000), (LEGACY_ANSWER, 40_000)):
        frames.append({"p": field, "v": "start"})
        for n in range(tokens):
            if rng.random() < 0.0005:
                frames.append(rng.choice([
                    {"p": "response/status", "v": "WIP"},
                    {"p": "response", "o": "BATCH", "v": [{"p": "accumulated_token_usage",
                                                           "v": n}]},
                    {"p": "response/fragments", "o": "APPEND", "v": [frag(n, "RESPONSE", "f")]},
                    {"p": LEGACY_ANSWER, "v": {"content": "obj"}}]))
                frames.append({"p": field, "o": "APPEND", "v": "back"})
            frames.append({"v": rng.choice(odd) if rng.random() < 0.05 else f"t{n} "})
    fast = parse([body(*frames, FINISHED)], fast=True)
    slow = parse([body(*frames, FINISHED)], fast=False)
    assert fast.events == slow.events and fast.parser.tree == slow.parser.tree
    assert fast.parser.taken >= 49_000
    assert len(fast.answer) > 200_000


def test_one_huge_flat_token_among_empty_ones() -> None:
    huge = "y" * 2_000_000
    fast = assert_same([body(*READY, {"p": LEGACY_ANSWER, "v": "a"}, *([{"v": ""}] * 300),
                             {"v": huge}, *([{"v": ""}] * 300), {"v": "z"}, FINISHED)])
    assert fast.answer == "a" + huge + "z"


def replay(tmp_path: Path, frames: Sequence[Any]) -> Replay:
    """A one-round recording of ``frames`` (after ``ready``) for the fake upstream."""
    events = [body(frame) + b"\n" for frame in frames]
    recording = tmp_path / "flat.sse"
    recording.write_bytes(b"event: ready\ndata: " + json.dumps(READY[1]).encode() + b"\n\n"
                          + b"".join(events))
    return Replay(recording)


async def test_split_think_tags_on_the_wire(proxy, tmp_path: Path) -> None:
    """The same flat stream served by the fake upstream: the official client
    sees the reasoning and answer without tag pieces, streamed or not."""
    recording = replay(tmp_path, SPLIT_TAGS[2:])
    proxy.fake.enqueue(recording, recording)
    client = openai_client(proxy)
    user = [{"role": "user", "content": "hello"}]
    whole = await client.chat.completions.create(model="deepseek-reasoner", messages=user)
    message = whole.choices[0].message
    assert (message.model_extra["reasoning_content"], message.content) == ("abc x < y", "d <")
    stream = await client.chat.completions.create(model="deepseek-reasoner", messages=user,
                                                  stream=True)
    thinking, content = [], []
    async for chunk in stream:
        for choice in chunk.choices:
            thinking.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
            content.append(choice.delta.content or "")
    assert ("".join(thinking), "".join(content)) == ("abc x < y", "d <")
    assert not any("<thi" in t or "</th" in t for t in thinking + content)


async def test_html_in_flat_reasoning_on_the_wire(proxy) -> None:
    """Flat reasoning full of HTML and tag pieces, served by the fake
    upstream as tokens: the official client gets it split as a whole."""
    chunks = ["x"] + ["<div> ", "a", "</", "div>", "<br/>"] * 400 + [
        "<thi", "nk>", "b <", "/th", "</th", "ink>", "after<p>"]
    proxy.fake.enqueue(Scripted(flat=True, thinking=chunks, answer=" done"))
    reply = await openai_client(proxy).chat.completions.create(
        model="deepseek-reasoner", messages=[{"role": "user", "content": "hello"}])
    reasoning, spill = split_think_tags("".join(chunks))
    message = reply.choices[0].message
    assert (message.model_extra["reasoning_content"], message.content) == (
        reasoning, spill + " done")
    assert reasoning.startswith("x<div> a</div><br/>") and spill == "after<p>"


async def test_a_patch_at_a_superscript_index_is_skipped_on_the_wire(proxy, tmp_path: Path
                                                                   ) -> None:
    """``response/fragments/²/…`` is a bad patch like any other: skipped,
    and the answer around it arrives whole (the turn used to fail with a 500
    "internal error: ValueError")."""
    recording = replay(tmp_path, [{"p": LEGACY_ANSWER, "v": "before "},
                                  {"p": "response/fragments", "v": [frag(1, "RESPONSE", "")]},
                                  {"p": "response/fragments/²/content", "o": "APPEND", "v": "x"},
                                  {"p": LEGACY_ANSWER, "o": "APPEND", "v": "after"}, FINISHED])
    proxy.fake.enqueue(recording)
    answer = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content == "before after"
    assert answer.choices[0].finish_reason == "stop"
