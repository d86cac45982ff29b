"""A provider's 200 answer, read into chat-completion chunks.

Normally an event stream: :func:`sse_reads` yields the ``data:`` chunks of
each socket read as they come. What a provider sends is judged by its first
bytes more than its label: a body that opens like an event stream is streamed
whatever its ``Content-Type``; JSON (a provider that ignored ``stream`` and
sent one ``chat.completion`` object, a gateway's error), and anything else
not labelled an event stream (a sign-in page), is read whole
(:func:`_whole_answer`). Every chunk is checked
for the shape the translator reads (:func:`malformed`); an error chunk or a
chunk of the wrong shape is the provider's failure.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from ..errors import UpstreamError
from ..log_redaction import redact

if TYPE_CHECKING:
    from .client import ProviderClient

log = logging.getLogger("ds2proxy.providers")

_DONE = b"[DONE]"
MAX_WHOLE_ANSWER = 16 << 20  # a non-streamed answer read whole, at most
_BOM = "\ufeff".encode()  # a UTF-8 byte-order mark some servers open with
MAX_LINE = MAX_WHOLE_ANSWER  # one event-stream line (or the blanks before the first), at most
_TOO_LONG = f"more than {MAX_LINE >> 20} MiB without a line end"
_LINE_END = re.compile(rb"\r\n|\r|\n")
# How an event stream's first line can begin (a comment, a field).
_STREAM_OPENINGS = (b":", b"data:", b"event:", b"id:", b"retry:")


class StreamEnd:
    """Whether the provider said its answer was over (``data: [DONE]``, or a
    whole completion object), as opposed to the connection merely ending."""

    def __init__(self) -> None:
        self.done = False


async def sse_reads(response: aiohttp.ClientResponse, client: ProviderClient,
                    end: StreamEnd | None = None) -> AsyncIterator[list[dict[str, Any]]]:
    """The parsed ``data:`` chunks of each socket read (lines and UTF-8
    characters cut between reads are joined first)."""
    end = end or StreamEnd()
    try:
        reads = response.content.iter_any()
        head = (await _opening(reads)).removeprefix(_BOM)
        if not _streamed(head, response):
            body = head + await read_body(response, MAX_WHOLE_ANSWER - len(head))
            yield _whole_answer(body, response, client, end)
            return
        async for chunks in _stream(head, reads, end):
            yield chunks
    except (TimeoutError, asyncio.TimeoutError):
        raise client.timed_out() from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"provider {client.name} broke off its answer",
                            detail=f"provider {client.name}: {type(exc).__name__}") from None
    except UpstreamError as exc:  # an error chunk: its words may quote the credential
        exc.detail = client.scrub(exc.detail)[:320]
        raise


def _streamed(head: bytes, response: aiohttp.ClientResponse) -> bool:
    """Does a body opening with ``head`` go as an event stream? When it opens
    like one, or is labelled one and is not JSON."""
    opening = head.lstrip()
    if opening.startswith(_STREAM_OPENINGS):
        return True
    labelled = response.headers.get("Content-Type", "").lower().startswith("text/event-stream")
    return labelled and not opening.startswith((b"{", b"["))


async def _opening(reads: AsyncIterator[bytes]) -> bytes:
    """The first reads, up to the first byte that is not a blank (at most
    MAX_LINE blanks: a provider sending only blanks is cut off)."""
    head = b""
    async for data in reads:
        head += data
        if data.strip():
            break
        if len(head) > MAX_LINE:
            raise UpstreamError("the provider sent only blanks", detail=_TOO_LONG)
    return head


async def _stream(head: bytes, reads: AsyncIterator[bytes], end: StreamEnd
                  ) -> AsyncIterator[list[dict[str, Any]]]:
    """The chunks of an event stream whose first bytes are ``head``. Lines end
    in LF, CRLF or a lone CR (the event-stream format allows each); a line
    longer than MAX_LINE is the provider's failure, not held without bound."""
    pending: list[bytes] = []  # the unfinished line, in its reads
    held = 0
    async for data in _chained([head] if head else [], reads):
        if b"\n" not in data and b"\r" not in data:
            pending.append(data)
            held += len(data)
            if held > MAX_LINE:
                raise UpstreamError("the provider sent a line too long to read",
                                    detail=_TOO_LONG)
            continue
        text = b"".join((*pending, data))
        lines = _LINE_END.split(text) if b"\r" in text else text.split(b"\n")
        last = lines.pop()
        pending, held = [last], len(last)
        chunks, error, done = _chunks(lines)
        if chunks:
            yield chunks
        if error is not None:
            raise error
        if done:
            end.done = True
            return  # the end marker: what follows it is not part of the answer
    chunks, error, end.done = _chunks([b"".join(pending)])  # a last line without its end
    if chunks:
        yield chunks
    if error is not None:
        raise error


async def _chained(first: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for data in first:
        yield data
    async for data in rest:
        yield data


def _whole_answer(body: bytes, response: aiohttp.ClientResponse, client: ProviderClient,
                  end: StreamEnd) -> list[dict[str, Any]]:
    """The chunks of a 200 that is not an event stream: one ``chat.completion``
    object (its message reads like one big delta), or a JSON error; anything
    else (a login page, a proxy's HTML) is a failure that says what came."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        kind = response.headers.get("Content-Type", "").split(";")[0] or "no content type"
        raise UpstreamError(f"provider {client.name} answered 200 with {kind[:60]}, "
                            "not a chat completion")
    chunk = _parsed(body)
    end.done = chunk is not None
    return [chunk] if chunk is not None else []


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body, however many reads they take."""
    body = b""
    while len(body) < limit:
        data = await response.content.read(limit - len(body))
        if not data:
            break
        body += data
    return body


def _chunks(lines: list[bytes]) -> tuple[list[dict[str, Any]], UpstreamError | None, bool]:
    """The chunks of complete lines up to the end marker (whether it came is
    the third value) or an error chunk (returned apart, so what came before
    it in the same read is still delivered)."""
    chunks: list[dict[str, Any]] = []
    for line in lines:
        if line.startswith(b"data:") and line[5:].strip() == _DONE:
            return chunks, None, True
        try:
            chunk = _chunk(line)
        except UpstreamError as exc:
            return chunks, exc, False
        if chunk is not None:
            chunks.append(chunk)
    return chunks, None, False


def _chunk(line: bytes) -> dict[str, Any] | None:
    if line.startswith(b"data: {"):  # the usual shape: JSON straight after one space
        payload = line[6:]
    else:
        line = line.strip()
        if not line.startswith(b"data:"):
            return None
        payload = line[5:].strip()
    if not payload or payload == _DONE:
        return None
    return _parsed(payload)


def _parsed(payload: bytes) -> dict[str, Any] | None:
    """A chunk's JSON object; a provider's in-band error raises."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        log.warning("a provider sent a chunk that is not JSON (%d bytes)", len(payload))
        return None
    if not isinstance(value, dict):
        return None
    if value.get("error") and not value.get("choices"):  # ``"error": null`` is no error
        error = value["error"]
        text = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamError("the provider reported an error in its answer",
                            detail=f"the provider said: {redact(str(text))}")
    fault = malformed(value)
    if fault is not None:
        raise UpstreamError("the provider sent a malformed chunk", detail=fault)
    return value


def malformed(chunk: dict[str, Any]) -> str | None:
    """What in a chunk (or completion) is not shaped as the chat API has it:
    the translator reads these members without checking each one."""
    choices = chunk.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        return "choices is not a list of objects"
    if chunk.get("usage") is not None and not isinstance(chunk["usage"], dict):
        return "usage is not an object"
    for choice in choices:
        delta = choice.get("delta") or choice.get("message") or {}
        if not isinstance(delta, dict) or not _text_or_none(choice.get("finish_reason")):
            return "a choice is not shaped as a delta and a finish reason"
        if not isinstance(delta.get("content"), (str, list, type(None))) or not all(
                _text_or_none(delta.get(key)) for key in ("reasoning_content", "reasoning")):
            return "content or reasoning is not text"
        calls = delta.get("tool_calls") or []
        if not isinstance(calls, list) or not all(_is_call(c) for c in calls):
            return "tool_calls is not a list of calls"
    return None


def _is_call(call: Any) -> bool:
    function = call.get("function") or {} if isinstance(call, dict) else None
    return isinstance(function, dict) and all(
        _text_or_none(v) for v in (call.get("id"), function.get("name"))) and isinstance(
        function.get("arguments"), (str, dict, type(None)))


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)
