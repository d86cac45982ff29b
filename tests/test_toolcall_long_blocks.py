"""Long call blocks streamed in tiny chunks (a whole file written through a
tool call, one token per chunk): however they are cut, the sieve's output
equals feeding the text at once, and the block is not re-read per chunk."""

from __future__ import annotations

import json
import random

import pytest
from test_toolcall_harness import AUTO, TOOLS, ids, outcome_of, stream_events

from ds2proxy.toolcall import ToolSieve
from ds2proxy.toolcall import segmenter
from ds2proxy.toolcall import tokens as tokens_module

# Pieces a body is built from: filler, and the markers the scan waits for,
# so that they fall on every side of a chunk boundary.
PIECES = ["x" * 40, "line\n", "  ", "]", "]]", "]]>", "]]>x", "]]></", "]]]]><![CDATA[>", "<",
          "</", "<b>", "-", "--", "-->", "<!--", "```\n", "```xml\n", "<![CDATA[", "\"", "\\",
          "{", "}", "</parameter>", "<tool_calls>", "</invoke>", "&lt;", "你好"]
HEAD = '<tool_calls>\n<invoke name="Write">\n<parameter name="file_path">a.md</parameter>\n'
TAIL = "</invoke>\n</tool_calls>"


def body(rng: random.Random, size: int) -> str:
    out: list[str] = []
    while sum(map(len, out)) < size:
        out.append(rng.choice(PIECES) if rng.random() < 0.4 else "x" * rng.randint(1, 300))
    return "".join(out)


def plain(rng: random.Random, size: int) -> str:
    """A body with no markup in it: only its end can change anything."""
    return "".join(rng.choice(["x" * 50, "line\n", "&lt;", " ", "你好", "]]", "--"])
                   for _ in range(size // 20))


def shapes(rng: random.Random, size: int) -> dict[str, str]:
    content = body(rng, size)
    return {
        "cdata": f'{HEAD}<parameter name="content"><![CDATA[{content}]]></parameter>\n{TAIL}',
        "cdata_mixed": f'{HEAD}<parameter name="content"><![CDATA[{content}'
                       f']]></parameter>\n{TAIL}',
        "plain": f'{HEAD}<parameter name="content">{plain(rng, size)}</parameter>\n{TAIL}',
        "plain_markup": f'{HEAD}<parameter name="content">{content}</parameter>\n{TAIL}',
        "json": '<tool_calls><invoke name="Write">'
                + json.dumps({"file_path": "a.md", "content": content}) + TAIL,
        "comment": f'{HEAD}<!-- {plain(rng, size)} -->\n'
                   f'<parameter name="content">x</parameter>\n{TAIL}',
        "comment_markup": f"{HEAD}<!-- {content} -->\n<parameter name=\"content\">x</parameter>\n"
                          f"{TAIL}",
        "bare": f'<invoke name="Write"><parameter name="content"><![CDATA[{content}]]>'
                f"</parameter></invoke>\n</tool_calls>",
        "bare_comment": f'<invoke name="Write">\n<!-- {plain(rng, size)} -->'
                        '<parameter name="content">x</parameter></invoke>\n</tool_calls>',
        "unclosed": f'{HEAD}<parameter name="content"><![CDATA[{content}',
        "two": f'{HEAD}<parameter name="content"><![CDATA[{content}]]></parameter>\n</invoke>\n'
               f'<invoke name="Write"><parameter name="content">{plain(rng, size)}</parameter>'
               f"\n{TAIL}",
    }


def chunked(rng: random.Random, text: str) -> list[str]:
    """``text`` in chunks of 1 to 7 characters (sometimes one larger read)."""
    out, at = [], 0
    while at < len(text):
        step = rng.randint(1, 7) if rng.random() < 0.97 else rng.randint(8, 400)
        out.append(text[at:at + step])
        at += step
    return out


def per_feed(chunks: list[str], early_emit: str) -> tuple[list[list[object]], bool]:
    """What each ``feed`` (then ``flush``) returned, and whether a block was consumed."""
    counter = ids()
    sieve = ToolSieve(TOOLS, AUTO, early_emit=early_emit, new_call_id=lambda: next(counter))
    events = [sieve.feed(chunk) for chunk in chunks]
    return [*events, sieve.flush()], sieve.consumed


def rescanning_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the sieve scan its block after every chunk, as it used to."""
    add = segmenter._Capture.add

    def always(self: segmenter._Capture, text: str) -> bool:
        add(self, text)
        return True

    monkeypatch.setattr(segmenter._Capture, "add", always)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("early_emit", ["high", "low", "off"])
def test_any_chunking_of_a_long_block_equals_the_whole_text(
        seed: int, early_emit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same outcome as the text fed at once, and every ``feed`` returns
    exactly what it returned when the block was scanned after each chunk
    (a skipped scan must never delay a call or the text after a block)."""
    rng = random.Random(seed)
    prose = rng.choice(["", "Writing the file now.\n", "see `<tool_calls>` first\n"])
    cases = []
    for shape, block in shapes(rng, rng.choice([2_000, 8_000, 20_000])).items():
        text = prose + block + rng.choice(["", "\nDone.", "\n<tool_calls>"])
        whole = outcome_of(stream_events([text], early_emit=early_emit))
        for _ in range(3):
            chunks = chunked(rng, text)
            assert outcome_of(stream_events(chunks, early_emit=early_emit)) == whole, shape
            cases.append((shape, chunks, per_feed(chunks, early_emit)))
    rescanning_every_chunk(monkeypatch)
    for shape, chunks, got in cases:
        assert got == per_feed(chunks, early_emit), shape


def test_the_cdata_repro_becomes_one_call_with_its_content() -> None:
    content = "x" * 300_000
    text = (f'<tool_calls><invoke name="Write"><parameter name="content"><![CDATA[{content}'
            "]]></parameter></invoke></tool_calls>")
    result = outcome_of(stream_events([text[at:at + 3] for at in range(0, len(text), 3)]))
    assert result.text == ""
    assert [(name, json.loads(args)) for name, args, _ in result.calls] == [
        ("Write", {"content": content})]


@pytest.mark.parametrize("shape", ["cdata", "plain", "json", "comment", "bare"])
def test_a_long_body_is_not_read_again_per_chunk(shape: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks that cannot end the body leave the scan alone: the tokenizer
    runs a few times for the whole block, not once per 3-character chunk."""
    advances = 0
    advance = tokens_module.Tokenizer.advance

    def counting(self: tokens_module.Tokenizer, text: str, *, final: bool) -> object:
        nonlocal advances
        advances += 1
        return advance(self, text, final=final)

    monkeypatch.setattr(tokens_module.Tokenizer, "advance", counting)
    long = "x" * 60_000
    text = {
        "cdata": f'{HEAD}<parameter name="content"><![CDATA[{long}]]></parameter>{TAIL}',
        "plain": f'{HEAD}<parameter name="content">{long}</parameter>{TAIL}',
        "json": '<tool_calls><invoke name="Write">' + json.dumps({"content": long}) + TAIL,
        "comment": f'{HEAD}<!-- {long} --><parameter name="content">x</parameter>{TAIL}',
        "bare": f'<invoke name="Write"><parameter name="content"><![CDATA[{long}]]>'
                "</parameter></invoke></tool_calls>",
    }[shape]
    chunks = [text[at:at + 3] for at in range(0, len(text), 3)]
    assert outcome_of(stream_events(chunks)).names == ["Write"]
    assert advances < 200, f"{advances} scans for {len(chunks)} chunks"
