"""One OpenAI-compatible provider's HTTP client.

Each provider has its own aiohttp session whose connector holds at most
``max_inflight`` connections, and a slot count of the same size: a request
that finds every slot taken is refused at once (a 429 the routing treats as
"cannot serve", so a route moves to its next target instead of queueing
behind a slow provider). A provider's failure is told apart the way the
routing needs it: 429 and 5xx, timeouts and broken connections may be
served elsewhere; a 4xx is the request's own fault.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from ..errors import InvalidRequest, ProxyError, UpstreamError, UpstreamRateLimited, \
    UpstreamTimeout
from ..log_redaction import REDACTED, redact
from .settings import ProviderSettings

log = logging.getLogger("ds2proxy.providers")

_DONE = b"[DONE]"
MAX_WHOLE_ANSWER = 16 << 20  # a non-streamed answer read whole, at most


def request_headers(settings: ProviderSettings) -> CIMultiDict[str]:
    """The configured headers, whatever their case, plus the bearer key
    unless one of them is an Authorization (as the admin test button sends
    them): a plain dict sent both when the case differed."""
    headers = CIMultiDict(settings.headers)
    headers["Content-Type"] = "application/json"
    headers["Accept"] = "text/event-stream"
    if settings.api_key and "Authorization" not in headers:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    return headers


class ProviderBusy(UpstreamRateLimited):
    """Every slot of the provider is taken (``max_inflight``)."""

    code = "provider_busy"


class ProviderClient:
    """Streams ``/chat/completions`` from one provider."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self.inflight = 0
        connector = aiohttp.TCPConnector(limit=settings.max_inflight, limit_per_host=0)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        self._headers = request_headers(settings)

    @property
    def name(self) -> str:
        return self.settings.name

    async def close(self) -> None:
        await self._session.close()

    def reserve(self) -> None:
        """Take a slot or raise ProviderBusy; :meth:`release` gives it back."""
        if self.inflight >= self.settings.max_inflight:
            raise ProviderBusy(f"provider {self.name} is at its max_inflight "
                               f"({self.settings.max_inflight})", retry_after=1)
        self.inflight += 1

    def release(self) -> None:
        self.inflight = max(0, self.inflight - 1)

    async def open_chat(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST the body; the open 200 response, else the failure as a ProxyError."""
        return await self._open("POST", "/chat/completions", body)

    async def call_json(self, method: str, path: str, body: dict[str, Any] | None = None
                        ) -> Any:
        """One JSON call (``GET /models``, ``POST /embeddings`` …) with the
        same errors as a chat; the decoded answer."""
        response = await self._open(method, path, body)
        try:
            return orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, asyncio.TimeoutError):
            raise UpstreamError(f"provider {self.name} broke off its answer") from None
        except orjson.JSONDecodeError:
            raise UpstreamError(f"provider {self.name} answered {path} with no JSON") from None
        finally:
            response.release()

    async def _open(self, method: str, path: str, body: dict[str, Any] | None
                    ) -> aiohttp.ClientResponse:
        timeout = self.settings.timeout_seconds
        try:
            response = await self._session.request(
                method, f"{self.settings.base_url}{path}",
                data=orjson.dumps(body) if body is not None else None, headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                              sock_read=timeout),
                allow_redirects=False)  # a redirect would carry the header secrets along
        except (TimeoutError, asyncio.TimeoutError):
            raise self.timed_out() from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"provider {self.name} could not be reached",
                                detail=f"provider {self.name}: {type(exc).__name__}") from None
        if response.status != 200:
            try:
                raise await self._refusal(response)
            finally:
                response.release()
        return response

    def scrub(self, text: str) -> str:
        """``text`` without this provider's key or header values (a provider
        may quote the credential it refused)."""
        for secret in (self.settings.api_key, *(v for _, v in self.settings.headers)):
            if len(secret) >= 4:
                text = text.replace(secret, REDACTED)
        return text

    def timed_out(self) -> UpstreamTimeout:
        return UpstreamTimeout(f"provider {self.name} sent nothing within "
                               f"{self.settings.timeout_seconds:g} s")

    async def _refusal(self, response: aiohttp.ClientResponse) -> ProxyError:
        """The error a non-200 answer stands for (the provider's words for a 4xx)."""
        status = response.status
        # Scrubbed before it is cut: a key cut in two would escape the scrub.
        message = self.scrub(await _error_message(response))[:300]
        where = f"provider {self.name} answered {status}"
        if status == 429:
            return UpstreamRateLimited(f"{where}: rate limited",
                                       retry_after=_retry_after(response) or None,
                                       detail=message)
        if status >= 500 or status == 408:
            return UpstreamError(f"{where}", retry_after=_retry_after(response) or None,
                                 detail=message)
        if 300 <= status < 400:
            return UpstreamError(f"{where}: a redirect, which is not followed (the "
                                 "credentials would go along); set base_url to its target",
                                 retryable=False, code="provider_redirected")
        if status in (401, 403):
            log.warning("%s: the provider refused its API key (%s)", where, message)
            return UpstreamError(f"provider {self.name} refused this server's credentials",
                                 retryable=False, code="provider_auth_failed", detail=message)
        return InvalidRequest(f"{where}: {message}"[:500], code="provider_rejected")


class StreamEnd:
    """Whether the provider said its answer was over (``data: [DONE]``, or a
    whole completion object), as opposed to the connection merely ending."""

    def __init__(self) -> None:
        self.done = False


async def sse_reads(response: aiohttp.ClientResponse, client: ProviderClient,
                    end: StreamEnd | None = None) -> AsyncIterator[list[dict[str, Any]]]:
    """The parsed ``data:`` chunks of each socket read (lines and UTF-8
    characters cut between reads are joined first). A 200 that is not an
    event stream is read whole: see :func:`_whole_answer`."""
    end = end or StreamEnd()
    buffer = b""
    try:
        if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
            yield await _whole_answer(response, client, end)
            return
        async for data in response.content.iter_any():
            buffer += data
            if b"\n" not in data:
                continue
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            chunks, error = _chunks(lines)
            if chunks:
                yield chunks
            if error is not None:
                raise error
            if any(line.startswith(b"data: " + _DONE) for line in lines[-2:]):
                end.done = True
                return  # the end marker (the last line, maybe before a blank one)
        tail = _chunk(buffer)
        if tail is not None:
            yield [tail]
    except (TimeoutError, asyncio.TimeoutError):
        raise client.timed_out() from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"provider {client.name} broke off its answer",
                            detail=f"provider {client.name}: {type(exc).__name__}") from None
    except UpstreamError as exc:  # an error chunk: its words may quote the credential
        exc.detail = client.scrub(exc.detail)[:320]
        raise


async def _whole_answer(response: aiohttp.ClientResponse, client: ProviderClient,
                        end: StreamEnd) -> list[dict[str, Any]]:
    """The chunks of a 200 that is not labelled an event stream: a provider
    that ignored ``stream`` sends one ``chat.completion`` object (its message
    reads like one big delta), a gateway may send its error as JSON, and a
    mislabelled stream still has its ``data:`` lines. Anything else (a login
    page, a proxy's HTML) is a failure that says what came."""
    body = await read_body(response, MAX_WHOLE_ANSWER)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        chunk = _parsed(body)
        end.done = chunk is not None
        return [chunk] if chunk is not None else []
    lines = body.split(b"\n")
    chunks, error = _chunks(lines)
    if error is not None:
        raise error
    end.done = any(line.strip() == b"data: " + _DONE for line in lines)
    if not chunks:
        kind = response.headers.get("Content-Type", "").split(";")[0] or "no content type"
        raise UpstreamError(f"provider {client.name} answered 200 with {kind[:60]}, "
                            "not a chat completion")
    return chunks


async def read_body(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body, however many reads they take."""
    body = b""
    while len(body) < limit:
        data = await response.content.read(limit - len(body))
        if not data:
            break
        body += data
    return body


def _chunks(lines: list[bytes]) -> tuple[list[dict[str, Any]], UpstreamError | None]:
    """The chunks of complete lines, up to an error chunk (returned apart, so
    what came before it in the same read is still delivered)."""
    chunks: list[dict[str, Any]] = []
    for line in lines:
        try:
            chunk = _chunk(line)
        except UpstreamError as exc:
            return chunks, exc
        if chunk is not None:
            chunks.append(chunk)
    return chunks, None


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
        calls = delta.get("tool_calls") or []
        if not isinstance(calls, list) or not all(_is_call(c) for c in calls):
            return "tool_calls is not a list of calls"
    return None


def _is_call(call: Any) -> bool:
    function = call.get("function") or {} if isinstance(call, dict) else None
    return isinstance(function, dict) and all(
        _text_or_none(v) for v in (call.get("id"), function.get("name")))


def _text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


async def _error_message(response: aiohttp.ClientResponse) -> str:
    try:
        data = orjson.loads(await read_body(response, 8192))
    except (aiohttp.ClientError, orjson.JSONDecodeError, TimeoutError, asyncio.TimeoutError):
        return f"HTTP {response.status}"
    error = data.get("error") if isinstance(data, dict) else None
    text = error.get("message") if isinstance(error, dict) else error
    return redact(str(text or f"HTTP {response.status}"))


def _retry_after(response: aiohttp.ClientResponse) -> int:
    value = response.headers.get("Retry-After", "").strip()
    return max(1, int(float(value))) if value.replace(".", "", 1).isdigit() else 0
