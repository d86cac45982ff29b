"""The upstream line splitter cuts any chunking of a body into the same lines
as a plain split: chunks cut inside UTF-8 characters, CRLF endings, invalid
bytes, lines far longer than a chunk, and a last line without a newline."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from ds2proxy.upstream.client import UpstreamStream
from ds2proxy.upstream.events import TextChunk
from ds2proxy.errors import UpstreamError
from ds2proxy.upstream import lines as lines_module
from ds2proxy.upstream.lines import LineCutter, iter_lines
from ds2proxy.upstream.stream_parser import StreamParser
from ds2proxy.upstream.rounds import BATCH_LINES, read_rounds

PIECES = [b"data: {\"v\":\"a\"}", b"", b"\xc3\xbc", b"\xf0\x9f\x98\x80", b"\r", b"\xff\xfe",
          b"event: ready", b"x" * 70000, b"\xe4\xbd", b"\xa0"]


def expected_lines(body: bytes) -> list[str]:
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [(line[:-1] if line.endswith(b"\r") else line).decode("utf-8", errors="replace")
            for line in lines]


def random_body(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(0, 40)):
        parts.append(rng.choice(PIECES))
        parts.append(rng.choice([b"\n", b"\r\n", b"\n\n", b""]))
    return b"".join(parts)


def chunked(body: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(body)), min(len(body) - 1, rng.randint(0, 30)))
                  ) if len(body) > 1 else []
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]


@pytest.fixture
async def serve_chunks(aiohttp_server) -> AsyncIterator:
    """A real server that writes the given chunks one by one."""
    bodies: list[list[bytes]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for chunk in bodies[int(request.match_info["n"])]:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/{n}", handler)
    server = await aiohttp_server(app)
    base = f"http://{server.host}:{server.port}"

    async def fetch(chunks: list[bytes], for_parser: bool = False) -> list[str]:
        bodies.append(chunks)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/{len(bodies) - 1}") as resp:
                return [line async for line in iter_lines(resp, for_parser=for_parser)]

    yield fetch


async def test_any_chunking_gives_the_plain_split(serve_chunks) -> None:
    rng = random.Random(1205)
    for _ in range(60):
        body = random_body(rng)
        chunks = chunked(body, rng)
        assert await serve_chunks(chunks) == expected_lines(body)
        assert parsed(await serve_chunks(chunks, True)) == parsed(expected_lines(body))


async def test_characters_cut_between_chunks_and_a_last_line_without_newline(
        serve_chunks) -> None:
    body = "données 😀 fin\r\nzwei\n\nend".encode()
    chunks = [body[i:i + 1] for i in range(len(body))]
    assert await serve_chunks(chunks) == ["données 😀 fin", "zwei", "", "end"]


def parsed(lines: list[str]) -> list:
    from ds2proxy.upstream.stream_parser import StreamParser

    parser = StreamParser()
    parser.start_round()
    return [event for line in lines for event in parser.feed_line(line)]


@pytest.mark.parametrize("name", ["longtext-deepseek-v4-flash-20260429",
                                  "guangzhou-weather-reasoner-search-20260404"])
def test_lines_for_the_parser_parse_like_every_line(fixtures_dir, name: str) -> None:
    """Blank lines right after a data line are dropped for the parser: they
    close an event it has closed already, so the events are the same."""
    from ds2proxy.testing import load_rounds
    from ds2proxy.upstream.lines import split_lines

    for body in load_rounds(fixtures_dir / "deepseek-sse" / name):
        block = body[:body.rindex(b"\n")]
        every, fewer = split_lines(block), split_lines(block, for_parser=True)
        assert len(fewer) < len(every)
        assert parsed(fewer) == parsed(every)


def test_blank_lines_after_other_fields_are_kept() -> None:
    from ds2proxy.upstream.lines import split_lines

    block = b"event: ready\n\ndata: {\"v\": 1}\n\n: comment\n\nevent: x\n\ndata: [DONE]\n"
    assert split_lines(block, for_parser=True) == [
        "event: ready", "", 'data: {"v": 1}', ": comment", "", "event: x", "",
        "data: [DONE]"]


def kept_for_parser(lines: list[str]) -> list[str]:
    """The parser's filter, line by line: a blank line right after a data line goes."""
    return [line for n, line in enumerate(lines)
            if line or n == 0 or not lines[n - 1].startswith("data:")]


LINE_KINDS = ['data: {"v":"ab"}', "data:", "data: [DONE]", "", "", "event: ready", ": data:",
              "xdata:", " data:", "data\u00fc", "ü"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(LINE_KINDS), min_size=1, max_size=40), st.integers(0, 3))
def test_lines_for_the_parser_match_the_filter_line_by_line(kinds, pattern):
    """The block-wide shortcut (data lines each followed by a blank one)
    keeps what the line-by-line filter keeps, whatever the block holds."""
    from ds2proxy.upstream.lines import split_lines

    if pattern == 1:  # the common shape, maybe with a leading blank line
        kinds = [line for kind in kinds for line in ('data: {"v":"' + kind + '"}', "")]
    elif pattern == 2:
        kinds = ["", *[line for kind in kinds for line in ("data: " + kind, "")]][:-1]
    block = "\n".join(kinds).encode()
    assert split_lines(block, for_parser=True) == kept_for_parser(kinds)
    assert split_lines(block) == kinds


async def test_a_large_read_reaches_the_consumer_in_slices(aiohttp_server):
    """Thousands of lines written at once are parsed and passed on a slice
    at a time, so the first are written out before the last are parsed."""
    tokens = [b'data: {"v":"ab"}'] * 1000
    body = b"\n".join([b'data: {"v": {"response": {"message_id": 2, "status": "WIP", '
                       b'"fragments": [{"id": 1, "type": "RESPONSE", "content": ""}]}}}',
                       b'data: {"p": "response/fragments/-1/content", "o": "APPEND", "v": "x"}',
                       *tokens, b'data: {"p": "response/status", "v": "FINISHED"}']) + b"\n"

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(body)
        await resp.write_eof()
        return resp

    async def reopen(message_id: int) -> UpstreamStream:
        raise AssertionError("no continue round")

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/")) as resp:
            parser = StreamParser(thinking_enabled=False)
            batches = [batch async for batch in read_rounds(
                UpstreamStream(resp, None), parser, reopen, max_rounds=0, silence=30)]
    assert max(len(batch) for batch in batches) <= BATCH_LINES
    assert len(batches) >= len(tokens) // BATCH_LINES
    assert "".join(e.text for batch in batches for e in batch
                   if isinstance(e, TextChunk)) == "x" + "ab" * len(tokens)
    assert parser.ended


@pytest.mark.parametrize("chunks", [[b"a" * 11], [b"a" * 6, b"a" * 5], [b"a" * 6, b"aaaaa\nb"],
                                    [b"x\n" + b"a" * 11]])
def test_a_line_past_the_cap_is_an_upstream_error(monkeypatch, chunks: list[bytes]) -> None:
    """However its bytes arrive, a line longer than the cap is refused, not held."""
    monkeypatch.setattr(lines_module, "MAX_LINE_BYTES", 10)
    cutter = LineCutter()
    with pytest.raises(UpstreamError, match="a line over"):
        for chunk in chunks:
            cutter.cut(chunk)


def test_a_line_at_the_cap_and_the_next_one_pass(monkeypatch) -> None:
    monkeypatch.setattr(lines_module, "MAX_LINE_BYTES", 10)
    cutter = LineCutter()
    assert cutter.cut(b"a" * 6) == [] and cutter.cut(b"a" * 4 + b"\n" + b"b" * 5) == ["a" * 10]
    assert cutter.cut(b"b" * 5 + b"\n") == ["b" * 10] and cutter.rest() == []
