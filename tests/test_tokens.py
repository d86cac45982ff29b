"""Token counting: the DeepSeek V4 tokenizer, exact through segments, cache,
streaming and the max_tokens cut."""

from __future__ import annotations

import functools
import json
import logging
import random
import sys
import threading
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from token_util import (
    binary_file_tokens,
    reference_counts,
    reference_ids,
    reference_offsets,
    reference_tokens,
)

from ds2proxy import tokenizer, tokens
from ds2proxy.prompt import markers
from ds2proxy.token_pieces import boundaries
from ds2proxy.token_stream import LONG_RUN, RUN_KEEP, StreamCount
from ds2proxy.tokens import (
    STRETCH_CHARS,
    count_attachment_tokens,
    count_tokens,
    count_tokens_async,
    segments,
)

MIXED = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog, twice:\n\n1. once\n2. again\n",
    "你好，世界！今天的天气怎么样？我们一起去公园散步吧。",
    "日本語のテキストとカタカナ、そして English words 混在 123456789 です。",
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n"
    "print([fib(i) for i in range(10)])  # 0, 1, 1, 2, 3, 5\r\n",
    "Emoji 🎉🚀👩‍👩‍👧‍👦 and flags 🇫🇷🇯🇵, accents naïve café, Ελληνικά, Русский текст.",
    '<｜DSML｜function_calls>\n<｜DSML｜invoke name="get_weather">\n'
    '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n'
    "</｜DSML｜invoke>\n</｜DSML｜function_calls>",
    '{"tool": "read_file", "arguments": {"path": "src/main.rs", "lines": [1, 200]}}',
    f"{markers.BEGIN}{markers.SYSTEM}Be brief.{markers.END_INSTRUCTIONS}{markers.USER}Hi"
    f"{markers.ASSISTANT}<think>greet</think>Hello!{markers.END_SENTENCE}",
    "   leading spaces, trailing spaces   \n\n\n\t\ttabs\u00a0nbsp\u3000ideographic space  ",
]


def recordings(fixtures_dir) -> list[str]:
    texts = []
    for path in sorted((fixtures_dir / "deepseek-sse").glob("*/expected.json")):
        expected = json.loads(path.read_text())
        texts += [expected["thinking"], expected["content"]]
    return texts


def corpus(fixtures_dir) -> list[str]:
    agent = [p.read_text() for p in sorted((fixtures_dir / "agent-requests").glob("*.json"))]
    return MIXED + recordings(fixtures_dir) + agent


def test_the_vocabulary_is_deepseek_v4():
    loaded = tokenizer.load()
    assert loaded.backend == "tokenizers"
    assert "<think>" in loaded.added_tokens and "｜DSML｜" in loaded.added_tokens
    assert count_tokens("Hello world.") == 3  # not the 6 of the old per-character estimate


@functools.cache
def pure_tokenizer() -> tokenizer.Tokenizer:
    return tokenizer.build(prefer_fast=False)


def test_fast_and_pure_python_encoders_agree_token_for_token(fixtures_dir):
    pure, fast = pure_tokenizer(), tokenizer.load()
    texts = MIXED + [text[:4000] for text in recordings(fixtures_dir)]
    assert pure.backend == "pure-python"
    assert pure.encode_many(texts) == fast.encode_many(texts)


def test_without_the_fast_library_the_pure_encoder_is_used_with_one_warning(
        monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import now fails
    with caplog.at_level(logging.WARNING, logger="ds2proxy.tokens"):
        fallback = tokenizer.build()
    assert fallback.backend == "pure-python"
    assert fallback.count_many(["Hello world."]) == [3]
    text = "Hello world, again.\n你好 and more words"
    starts = [0, *boundaries(text)]
    assert len(starts) > 3
    assert fallback.piece_counts(text, starts) == tokenizer.load().piece_counts(text, starts)
    assert sum(fallback.piece_counts(text, starts)) == reference_tokens(text)
    [record] = caplog.records
    assert "pure-Python" in record.getMessage()


def test_counts_equal_the_tokenizer_on_the_whole_text(fixtures_dir):
    for text in corpus(fixtures_dir):
        assert count_tokens(text) == reference_tokens(text)


def test_segments_cover_the_text_and_add_up_exactly(fixtures_dir):
    for text in corpus(fixtures_dir):
        for size in (1, 5, 64, 2048):
            parts = segments(text, size)
            assert "".join(parts) == text
            assert sum(reference_counts(parts)) == reference_tokens(text)


ALPHABET = st.sampled_from(list("ab Z\n\r\t.,:;!?'\"-_/()[]{}<>#=+*0123456789é中文字日本カナ。，！🎉\u0301"
                                "\u00a0\u3000\x85\u2003") + ["<think>", "｜DSML｜", " the", "\n\n", "  "])


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, max_size=80), st.integers(min_value=1, max_value=12))
def test_safe_boundaries_hold_for_any_text(pieces, size):
    text = "".join(pieces)
    assert sum(reference_tokens(part) for part in segments(text, size)) == reference_tokens(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, max_size=60))
def test_pure_encoder_agrees_on_any_text(pieces):
    text = "".join(pieces)
    assert pure_tokenizer().encode_many([text]) == [reference_ids(text)]


def fed_in_steps(text: str, rnd: random.Random, after_each: Callable[[StreamCount, int], None],
                 cap: int | None = None) -> StreamCount:
    """``text`` fed to a fresh counter one to nine characters at a time (under
    ``cap`` when given, which it must not reach); ``after_each(counter,
    characters fed)`` runs after every step."""
    counter, at = StreamCount(), 0
    while at < len(text):
        step = rnd.randint(1, 9)
        if cap is None:
            counter.feed(text[at:at + step])
        else:
            assert counter.feed_within(text[at:at + step], cap) == (text[at:at + step], False)
        at += step
        after_each(counter, at)
    return counter


@settings(max_examples=200, deadline=None)
@given(st.lists(ALPHABET, max_size=120), st.randoms(use_true_random=False))
def test_streamed_count_of_any_fragmentation_equals_the_whole(pieces, rnd):
    text = "".join(pieces)

    def bounded(counter: StreamCount, at: int) -> None:
        assert counter.upper_bound >= reference_tokens(text[:at])

    assert fed_in_steps(text, rnd, bounded).total() == reference_tokens(text)


def test_streamed_recordings_count_exactly_in_small_fragments(fixtures_dir):
    rnd = random.Random(7)
    for text in recordings(fixtures_dir):
        counter = StreamCount()
        at = 0
        while at < len(text):
            step = rnd.randint(1, 12)
            counter.feed(text[at:at + step])
            at += step
        assert counter.total() == reference_tokens(text)


LONG_RUNS = ["ab" * 150, "x" * 301, "中文" * 90, "a b", " the", "\n", "\nword", "é" * 200,
             "code_without_spaces(" * 20, ". ", "日本カナ", "  "]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(LONG_RUNS), min_size=1, max_size=30),
       st.randoms(use_true_random=False))
def test_long_stretches_without_a_boundary_count_exactly(pieces, rnd):
    """Stretches far past the commit size with no safe boundary, then
    boundaries that need characters still to come: the rescans find them."""
    text = "".join(pieces)

    def exact_now_and_then(counter: StreamCount, at: int) -> None:
        if rnd.random() < 0.02:
            assert counter.total() == reference_tokens(text[:at])

    assert fed_in_steps(text, rnd, exact_now_and_then).total() == reference_tokens(text)


def boundless_runs() -> list[str]:
    """Long stretches where no safe boundary ever comes (one pre-token each)."""
    rnd = random.Random(11)
    letters = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(20000))
    b64 = "".join(rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                  for _ in range(20000))
    return ["=" * 20000, "x" * 30000, "-" * 12000 + "x", letters, b64, "中文" * 5000,
            "é" * 9000, "ab" * 8000, "code_without_spaces(" * 1000, "=" * 9000 + "\nnext line"]


@pytest.mark.parametrize("index", range(10))
def test_runs_with_no_boundary_count_exactly_across_their_soft_boundaries(index):
    """A line of '=' near max_tokens cost 34 s of loop time: every count
    encoded the whole run again. Under a limit long runs are now closed at
    token ends well before their end; counts and cuts still equal the whole
    text's."""
    text = boundless_runs()[index]
    rnd = random.Random(index)

    def open_tail_bounded(counter: StreamCount, at: int) -> None:
        assert counter.uncounted_chars <= LONG_RUN + RUN_KEEP  # never the whole run
        if rnd.random() < 0.002:
            assert counter.total() == reference_tokens(text[:at])

    whole = reference_tokens(text)
    assert fed_in_steps(text, rnd, open_tail_bounded, cap=10**9).total() == whole
    for cap in (whole // 3, whole - 1):
        taken, reached, capped = _feed_until(token_fragments(text, rnd), cap)
        assert reached and capped.total() == reference_tokens(taken) == cap
        assert reference_ids(taken) == reference_ids(text)[:cap]  # a token boundary
        taken, reached, capped = _feed_until(random_fragments(text, rnd), cap)
        assert reached and text.startswith(taken)
        assert capped.total() == reference_tokens(taken) == cap


def test_byte_lengths_are_the_vocabulary_entries():
    """Read from the vocabulary on demand, as the table they replace had them."""
    fast, pure = tokenizer.load(), pure_tokenizer()
    ids = fast.encode_many(MIXED)
    for text, text_ids in zip(MIXED, ids):
        lengths = [fast.byte_length(token_id) for token_id in text_ids]
        assert sum(lengths) == len(text.encode("utf-8"))
        assert [pure.byte_length(token_id) for token_id in text_ids] == lengths


def _feed_until(fragments: list[str], cap: int) -> tuple[str, bool, StreamCount]:
    counter, taken, reached = StreamCount(), [], False
    for fragment in fragments:
        part, reached = counter.feed_within(fragment, cap)
        taken.append(part)
        if reached:
            break
    return "".join(taken), reached, counter


def random_fragments(text: str, rnd: random.Random) -> list[str]:
    cuts = [0]
    while cuts[-1] < len(text):
        cuts.append(cuts[-1] + rnd.randint(1, 15))
    return [text[a:b] for a, b in zip(cuts, cuts[1:])]


def token_fragments(text: str, rnd: random.Random) -> list[str]:
    """Groups of one to four whole tokens, as the upstream streams them."""
    ends = sorted({end for _, end in reference_offsets(text)})
    cuts = [0] + [end for i, end in enumerate(ends) if i % rnd.randint(1, 4) == 0] + [len(text)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


@pytest.mark.parametrize("cap", [1, 7, 50, 333])
def test_a_cap_cuts_on_the_token_where_the_count_passes_it(fixtures_dir, cap):
    rnd = random.Random(cap)
    for text in MIXED + recordings(fixtures_dir):
        taken, reached, counter = _feed_until(token_fragments(text, rnd), cap)
        if reference_tokens(text) <= cap:
            assert (taken, reached) == (text, False)
            continue
        assert reached and counter.total() == reference_tokens(taken) == cap
        assert reference_ids(taken) == reference_ids(text)[:cap]  # a token boundary


@pytest.mark.parametrize("cap", [1, 7, 50, 333])
def test_a_cap_holds_for_fragments_cut_anywhere(fixtures_dir, cap):
    rnd = random.Random(cap)
    for text in MIXED + recordings(fixtures_dir):
        taken, reached, counter = _feed_until(random_fragments(text, rnd), cap)
        assert text.startswith(taken) and counter.total() == reference_tokens(taken)
        assert reached == (reference_tokens(text) > cap)
        if "<｜" in text:  # a marker cut in two counts as its pieces until complete
            assert counter.total() <= cap
        else:
            assert counter.total() == min(cap, reference_tokens(text))


def test_a_text_exactly_at_the_cap_is_not_cut():
    text = "One two three four five."
    cap = reference_tokens(text)
    fragments = random_fragments(text, random.Random(1))
    taken, reached, counter = _feed_until(fragments, cap)
    assert (taken, reached, counter.total()) == (text, False, cap)
    taken, reached, counter = _feed_until(fragments, cap - 1)
    assert reached and taken == "One two three four five" and counter.total() == cap - 1


def test_resent_history_is_served_from_the_cache(monkeypatch):
    history = "\n".join(f"Turn {i}: the agent read file number {i} and found {i * 7} bugs."
                        for i in range(3000))
    assert count_tokens(history) == reference_tokens(history)
    encoded: list[str] = []
    loaded = tokenizer.load()
    original = loaded.count_many
    monkeypatch.setattr(loaded, "count_many", lambda texts: encoded.extend(texts) or
                        original(texts))
    longer = history + "\nTurn 3000: a new message arrives."
    assert count_tokens(longer) == reference_tokens(longer)
    assert 0 < sum(map(len, encoded)) < 3 * tokens.SEGMENT_CHARS < len(longer)


async def test_a_large_uncached_text_is_encoded_off_the_loop(monkeypatch):
    loaded = tokenizer.load()
    original = loaded.count_many
    threads: list[int] = []
    monkeypatch.setattr(loaded, "count_many", lambda texts: threads.append(
        threading.get_ident()) or original(texts))
    small, large = "a short question", "fresh words to count " * 5000
    assert await count_tokens_async(small) == reference_tokens(small)
    assert await count_tokens_async(large) == reference_tokens(large)
    assert threads[0] == threading.get_ident() != threads[1]


async def test_text_uploads_count_their_tokens_and_binaries_their_bytes():
    notes = "Meeting notes: ship the tokenizer on Friday. 会议记录。"
    png = bytes(range(256)) * 3
    total = await count_attachment_tokens([(notes.encode(), "text/markdown"),
                                           (png, "image/png"),
                                           (b"\xff\xfe not utf-8", "text/plain")])
    assert total == (reference_tokens(notes) + binary_file_tokens(len(png))
                     + binary_file_tokens(len(b"\xff\xfe not utf-8")))


@pytest.mark.parametrize("mime", ["application/json; charset=utf-8", "Text/Plain",
                                  "application/ld+json", "image/svg+xml", "TEXT/CSV;header=present"])
async def test_a_text_type_written_with_parameters_or_capitals_counts_its_tokens(mime):
    """A MIME type's case and parameters do not change what it is: these
    text files were counted as binaries, a token per three bytes."""
    text = '{"city": "Paris", "temps": [12, 14, 9], "note": "晴"}\n' * 20
    assert await count_attachment_tokens([(text.encode(), mime)]) == reference_tokens(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, max_size=80), st.integers(0, 40), st.integers(0, 60))
def test_a_scan_that_stops_early_finds_only_safe_boundaries(pieces, lo, width):
    """``boundaries(text, lo, hi)`` never reports an edge the whole scan does
    not (a CJK run cut off by ``hi`` is not ended there)."""
    text = "".join(pieces)
    found = list(boundaries(text, lo, lo + width))
    assert set(found) <= set(boundaries(text, lo)) and all(b <= lo + width for b in found)


@pytest.mark.parametrize("unit", ["ab", "中文字", "é", "-"])
def test_a_giant_stretch_without_boundaries_is_encoded_in_bounded_pieces(unit):
    """One pre-token of 200 000 characters went to the tokenizer whole, at a
    cost above linear in time and memory (a 64 MiB body could take minutes
    and gigabytes); it is cut every STRETCH_CHARS, within a token per cut."""
    text = "Start. " + unit * (200_000 // len(unit)) + " end.\n"
    parts = segments(text)
    assert "".join(parts) == text and max(map(len, parts)) <= STRETCH_CHARS
    assert abs(count_tokens(text) - reference_tokens(text)) <= len(parts)
    # Text with safe boundaries in reach is still cut only at them: exact.
    prose = "word " * 40_000
    assert count_tokens(prose) == reference_tokens(prose)


def test_many_texts_are_encoded_in_batches_of_bounded_size():
    """Every encoding of one call stayed alive until all were counted: a
    64 MiB prompt held gigabytes. Batches hold about BATCH_CHARS characters."""
    texts = ["word " * 50_000, "中文 " * 100_000, "x", "tail " * 300_000]
    batches = tokenizer._batches(texts)
    assert [t for b in batches for t in b] == texts
    assert all(len(b) == 1 or sum(map(len, b)) <= tokenizer.BATCH_CHARS for b in batches)
    assert len(batches) > 1
    assert tokenizer.load().count_many(texts) == reference_counts(texts)


def test_the_count_cache_is_safe_to_share_with_worker_threads(monkeypatch):
    """Counts run on the loop and in worker threads at once; the cache's
    look-up-then-refresh and its evictions raced (a KeyError) when another
    thread evicted a segment between the two steps."""
    monkeypatch.setattr(tokens, "CACHE_ENTRIES", 8)
    monkeypatch.setattr(tokens, "_cache", type(tokens._cache)())
    pieces = [f"segment {i}" for i in range(40)]
    failures: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(3000):
                parts = rng.sample(pieces, 20)
                known, missing = tokens._lookup(parts)
                stored = tokens._store(missing, [len(part) for part in missing])
                assert known + stored == sum(len(part) for part in parts)
        except BaseException as exc:  # handed to the test's thread below
            failures.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
