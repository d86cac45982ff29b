"""Split an upstream byte stream into SSE lines of any length.

aiohttp's ``readline`` refuses lines above its buffer limit, and a continue
round's first line can exceed 100 KB, so lines are cut here from raw chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp


async def iter_lines(resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """Yield decoded lines without their line ending; a final partial line too."""
    buffer = bytearray()
    async for chunk in resp.content.iter_any():
        buffer.extend(chunk)
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            yield _decode(buffer[start:end])
            start = end + 1
        del buffer[:start]
    if buffer:
        yield _decode(buffer)


def _decode(raw: bytes | bytearray) -> str:
    line = bytes(raw)
    if line.endswith(b"\r"):
        line = line[:-1]
    return line.decode("utf-8", errors="replace")
