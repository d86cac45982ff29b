"""A request body written to the socket in slices.

aiohttp hands a bytes body to the transport in one write; whatever the
socket does not take at once is copied into the transport's buffer, a second
copy of a large prompt for as long as it takes to send. Writing slices and
waiting for the buffer to drain between them keeps that copy small.
"""

from __future__ import annotations

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import BytesPayload

SLICE_BYTES = 256 * 1024


class SlicedBytes(BytesPayload):
    """Bytes sent ``SLICE_BYTES`` at a time (same Content-Length)."""

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter,
                                content_length: int | None) -> None:
        view = memoryview(self._value)
        if content_length is not None:
            view = view[:content_length]
        for start in range(0, len(view), SLICE_BYTES):
            await writer.write(view[start:start + SLICE_BYTES])
