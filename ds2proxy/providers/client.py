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
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from ..errors import InvalidRequest, ProxyError, UpstreamError, UpstreamRateLimited, \
    UpstreamTimeout
from ..log_redaction import REDACTED, redact
from ..upstream.client import retry_after
from .answers import read_body
from .settings import ProviderSettings

log = logging.getLogger("ds2proxy.providers")
MAX_LEARNT_MODELS = 1024
MAX_ERROR_BODY = 8192  # an error body read for the provider's words, at most



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
        # Models whose output limit this provider takes under another name
        # than max_tokens (learnt from its refusal; see ProviderTurn.open).
        self._limit_fields: dict[str, str] = {}
        # Whether it refused a json_schema response_format: then JSON mode
        # with the schema in the prompt is asked for at once (ProviderTurn.open).
        self.refuses_json_schema = False

    @property
    def name(self) -> str:
        return self.settings.name

    async def close(self) -> None:
        await self._session.close()

    def limit_field(self, model: str) -> str:
        """The name ``model`` takes the output limit under: the configured one,
        else what the provider's refusal taught, else ``max_tokens``."""
        configured = self.settings.max_tokens_field
        if configured != "auto":
            return configured
        return self._limit_fields.get(model, "max_tokens")

    def learn_limit_field(self, model: str, name: str) -> None:
        """Remember the name ``model`` took the limit under after a refusal."""
        if len(self._limit_fields) >= MAX_LEARNT_MODELS:  # glob-served names are unbounded
            self._limit_fields.clear()
        self._limit_fields[model] = name

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


async def _error_message(response: aiohttp.ClientResponse) -> str:
    try:
        body = await read_body(response, MAX_ERROR_BODY + 1)
    except (aiohttp.ClientError, TimeoutError, asyncio.TimeoutError):
        body = b""
    # Only a whole body is read for words: a cut one may end in part of a
    # secret, which the scrub would not know.
    words = _words(body) if len(body) <= MAX_ERROR_BODY else ""
    return redact(words or f"HTTP {response.status}")


def _words(body: bytes) -> str:
    """The provider's words in an error body: OpenAI's ``error.message`` (or
    the ``error`` itself), a ``message`` or ``detail`` (FastAPI servers), or
    a plain text that is not a web page."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return "" if text.startswith("<") else " ".join(text.split())
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    for value in (error.get("message") if isinstance(error, dict) else error,
                  data.get("message"), data.get("detail")):
        if value:
            return value if isinstance(value, str) else orjson.dumps(value).decode()
    return ""


def _retry_after(response: aiohttp.ClientResponse) -> int:
    """The provider's ``Retry-After`` (seconds or an HTTP date, capped as an
    account's is), or 0 without one: then the configured backoff decides."""
    return retry_after(response.headers) if "Retry-After" in response.headers else 0
