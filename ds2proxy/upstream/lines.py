"""Split an upstream byte stream into SSE lines of any length.

aiohttp's ``readline`` refuses lines above its buffer limit, and a continue
round's first line can exceed 100 KB, so lines are cut here from raw chunks.
All the complete lines of a chunk are decoded at once and split in one call
(a newline byte never occurs inside a UTF-8 sequence, so cutting the bytes
at the last newline never splits a character). A line still open past
:data:`MAX_LINE_BYTES` is an upstream error, not memory to give it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp

from ..errors import UpstreamError

# The longest real line, a continue round's opening snapshot of all the text
# so far, was 125 KB: this leaves room for the longest answers and bounds
# what a broken upstream can make a stream hold.
MAX_LINE_BYTES = 32 * 1024 * 1024


async def iter_lines(resp: aiohttp.ClientResponse, *, for_parser: bool = False
                     ) -> AsyncIterator[str]:
    """Yield decoded lines without their line ending; a final partial line too.

    ``for_parser`` drops the blank line right after a ``data:`` line when both
    arrived in one read: it ends an event the parser has already closed (a
    data line resets the event name), so half the lines of a stream need no
    trip through the consumer.
    """
    cutter = LineCutter(for_parser)
    async for chunk in resp.content.iter_any():
        for line in cutter.cut(chunk):
            yield line
    for line in cutter.rest():
        yield line


async def iter_line_batches(resp: aiohttp.ClientResponse, *, for_parser: bool = False
                            ) -> AsyncIterator[list[str]]:
    """As :func:`iter_lines`, but all the complete lines of a read at once:
    one batch per read, never held for more. A read that ends no line is an
    empty batch: bytes that never end a line say nothing, and the reader's
    silence timer must see them as the nothing they are."""
    cutter = LineCutter(for_parser)
    async for chunk in resp.content.iter_any():
        yield cutter.cut(chunk)
    rest = cutter.rest()
    if rest:
        yield rest


class LineCutter:
    """Cuts raw chunks into complete lines, keeping a line not ended yet."""

    def __init__(self, for_parser: bool = False) -> None:
        self.for_parser = for_parser
        self._partial: list[bytes] = []  # the start of a line not ended yet
        self._held = 0  # its size

    def cut(self, chunk: bytes) -> list[str]:
        """The lines ``chunk`` completes."""
        partial = self._partial
        cut = chunk.rfind(b"\n")
        if cut < 0:
            self._hold(chunk)
            return []
        block = chunk[:cut]
        if partial:
            if self._held + chunk.find(b"\n") > MAX_LINE_BYTES:
                raise _too_long()
            partial.append(block)
            block = b"".join(partial)
            partial.clear()
        self._held = 0
        if cut + 1 < len(chunk):
            self._hold(chunk[cut + 1:])
        return split_lines(block, for_parser=self.for_parser)

    def _hold(self, piece: bytes) -> None:
        self._held += len(piece)
        if self._held > MAX_LINE_BYTES:
            raise _too_long()
        self._partial.append(piece)

    def rest(self) -> list[str]:
        """The final line that no newline ended, if any."""
        if not self._partial:
            return []
        line = from_bytes(b"".join(self._partial))
        self._partial.clear()
        self._held = 0
        return [line]


def _too_long() -> UpstreamError:
    return UpstreamError(f"the upstream stream sent a line over {MAX_LINE_BYTES >> 20} MiB")


def split_lines(block: bytes, *, for_parser: bool = False) -> list[str]:
    """The lines of ``block`` (complete lines, its last newline cut off)."""
    text = block.decode("utf-8", errors="replace")
    if for_parser and b"\r" not in block:
        return _for_parser(text)
    lines = text.split("\n")
    if b"\r" in block:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return _kept(lines) if for_parser else lines


# Data lines each followed by a blank line, from the start of a line: most
# of a stream, whose blank lines the parser does not need.
_DATA_PAIRS = re.compile(r"^(?:data:[^\n]*\n\n)+", re.MULTILINE)


def _for_parser(text: str) -> list[str]:
    """The lines of ``text`` as :func:`_kept` keeps them, without a step per
    line: each run of data lines followed by their blank lines is split at
    once. No blank line between two runs comes right after a data line (it
    would have been part of a run), so those lines are kept as they are;
    only after the last run can one (the last line, no newline after it)."""
    out: list[str] = []
    at = 0
    for match in _DATA_PAIRS.finditer(text):
        start, end = match.span()
        if start > at:  # the lines before the run (its newline is the run's start)
            out += text[at:start - 1].split("\n")
        out += text[start:end - 2].split("\n\n")
        at = end
    out += _kept(text[at:].split("\n"))
    return out


def _kept(lines: list[str]) -> list[str]:
    """``lines`` without each blank line that comes right after a data line."""
    return [line for before, line in zip(["", *lines], lines)
            if line or not before.startswith("data:")]


def from_bytes(raw: bytes) -> str:
    line = raw[:-1] if raw.endswith(b"\r") else raw
    return line.decode("utf-8", errors="replace")
