"""The DeepSeek web-chat HTTP client: one method per upstream endpoint.

It speaks the wire protocol (identity headers, the JSON envelope read by
:mod:`ds2proxy.upstream.envelope`) and nothing else: which account, when to refresh and when to
switch are decided by :mod:`ds2proxy.upstream.credentials`. One
``aiohttp.ClientSession`` serves the whole app.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from ..config import AccountConfig, UpstreamSettings
from ..errors import (
    ACCOUNT_UNUSABLE,
    LoginFailed,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
)
from ..health.settings import MAX_COOLDOWN
from ..pow import Challenge
from .envelope import CLIENT_TOO_OLD, Envelope, UpstreamCallError, parse_envelope
from .lines import iter_line_batches, iter_lines
from .payload import SlicedBytes
from .proxies import TRANSPORT_ERRORS, ProxySessions

log = logging.getLogger("ds2proxy.upstream")

COMPLETION_PATH = "/api/v0/chat/completion"
UPLOAD_PATH = "/api/v0/file/upload_file"
SESSION_LIST_PATH = "/api/v0/chat_session/fetch_page?lte_cursor.pinned=false"
DEFAULT_RETRY_AFTER = 5  # seconds, for a 429 that names no wait

def login_body(account: AccountConfig) -> dict:
    """Spec §2: e-mail wins over mobile; mobile as digits, ``86`` prefix dropped."""
    base = {"password": account.password, "device_id": "ds2proxy", "os": "android"}
    if account.email:
        return {"email": account.email, **base}
    if account.mobile:
        digits = re.sub(r"\D", "", account.mobile)
        if len(digits) == 13 and digits.startswith("86"):
            digits = digits[2:]
        return {"mobile": digits, "area_code": None, **base}
    raise UpstreamAuthError("missing email/mobile", retryable=False)


class UpstreamStream:
    """An open completion/continue SSE response, mirrored into a dev capture."""

    def __init__(self, resp: aiohttp.ClientResponse, capture: Any | None) -> None:
        self.resp = resp
        self.capture = capture

    def lines(self) -> AsyncIterator[str]:
        """The response's lines (no extra generator layer unless captured)."""
        if self.capture is None:
            return iter_lines(self.resp, for_parser=True)
        return self._captured_lines()

    async def _captured_lines(self) -> AsyncIterator[str]:
        async for line in iter_lines(self.resp):
            if self.capture is not None:
                self.capture.append(line.encode() + b"\n")
            yield line

    def line_batches(self) -> AsyncIterator[list[str]]:
        """The response's lines, a list per read (see :meth:`lines`)."""
        if self.capture is None:
            return iter_line_batches(self.resp, for_parser=True)
        return self._captured_batches()

    async def _captured_batches(self) -> AsyncIterator[list[str]]:
        async for lines in iter_line_batches(self.resp):
            if self.capture is not None:
                self.capture.append(b"".join(line.encode() + b"\n" for line in lines))
            yield lines

    def release(self, error: str | None = None) -> None:
        self.resp.release()
        if self.capture is not None:
            self.capture.finish(error)
            self.capture = None


# Most non-streaming calls (login, session, PoW challenge, uploads) in flight
# at once per route (direct, or one account proxy); answer streams are not
# counted. A burst of a thousand new turns would otherwise put a thousand
# setup calls on the wire together, each holding its request, body and timers
# until the loop gets round to its answer; past this many they queue here, as
# a waiter each. Per route, so a hanging proxy holds up only its accounts.
CALLS_IN_FLIGHT = 64


class DeepSeekClient:
    """Endpoint calls. ``token`` arguments are DeepSeek user tokens.

    ``captures`` (optional) is the dev-capture buffer: every exchange is
    offered to it, and it redacts and keeps what it is configured to keep.
    """

    def __init__(self, http: aiohttp.ClientSession, settings: UpstreamSettings,
                 captures: Any | None = None, proxies: ProxySessions | None = None,
                 proxy_of: Callable[[str], str] | None = None) -> None:
        self.http = http
        self.settings = settings
        self.captures = captures
        self.proxies = proxies
        # Which proxy a token's account goes through ("" = direct).
        self.proxy_of = proxy_of or (lambda token: "")
        self._calls: dict[str, asyncio.Semaphore] = {}  # by route ("" = direct)

    def _session(self, proxy: str) -> aiohttp.ClientSession:
        return self.proxies.session(proxy) if self.proxies is not None and proxy else self.http

    def _slot(self, proxy: str) -> asyncio.Semaphore:
        """The in-flight limit of a route's non-streaming calls."""
        slot = self._calls.get(proxy)
        if slot is None:
            slot = self._calls[proxy] = asyncio.Semaphore(CALLS_IN_FLIGHT)
        return slot

    def _capture(self, method: str, path: str, headers: dict[str, str], body: bytes | None
                 ) -> Any | None:
        if self.captures is None:
            return None
        return self.captures.start(method, self._url(path), headers, body)

    def configure(self, settings: UpstreamSettings) -> None:
        self.settings = settings

    def headers(self, token: str | None = None, pow_header: str | None = None) -> dict[str, str]:
        s = self.settings
        h = {
            "User-Agent": s.user_agent,
            "x-client-platform": s.platform,
            "x-client-version": s.client_version,
            "x-client-locale": s.locale,
            "Accept": "application/json",
            "Content-Type": "application/json",
            "accept-charset": "UTF-8",
        }
        if token:
            h["authorization"] = f"Bearer {token}"
        if pow_header:
            h["x-ds-pow-response"] = pow_header
        return h

    def _url(self, path: str) -> str:
        return self.settings.base_url + path

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.settings.timeout_seconds)

    async def _json_call(self, what: str, method: str, path: str, *, token: str | None = None,
                         body: Any = None, proxy: str | None = None) -> Envelope:
        headers = self.headers(token)
        data = None if body is None else orjson.dumps(body)
        route = self.proxy_of(token) if proxy is None and token else (proxy or "")
        return await self._call(what, method, path, headers, data, data, proxy=route)

    async def _call(self, what: str, method: str, path: str, headers: dict[str, str],
                    data: Any, captured_body: bytes | None, *, proxy: str = "") -> Envelope:
        """Send one request (through ``proxy`` when given) and decode its
        envelope; errors become UpstreamError."""
        capture = self._capture(method, path, headers, captured_body)
        try:
            async with self._slot(proxy), self._session(proxy).request(
                    method, self._url(path), headers=headers, data=data,
                    timeout=self._timeout()) as resp:
                raw = await resp.read()
                status, wait = resp.status, retry_after(resp.headers)
                asked = "Retry-After" in resp.headers
        except TRANSPORT_ERRORS as exc:
            if capture is not None:
                capture.finish(type(exc).__name__)
            raise UpstreamError(f"{what} failed: {type(exc).__name__}") from None
        if capture is not None:
            capture.set_status(status)
            capture.append(raw)
            capture.finish()
        if status == 429:
            raise UpstreamRateLimited("upstream rate limit", retry_after=wait)
        if status >= 500 and asked:
            raise UpstreamError(f"{what} answered HTTP {status}", retry_after=wait)
        env = parse_envelope(status, raw)
        self._refuse_outdated(env)
        if not env.ok:
            raise UpstreamCallError(what, env)
        return env

    def _refuse_outdated(self, env: Envelope) -> None:
        """CLIENT_VERSION_TOO_LOW (40005) from any endpoint: the same hint,
        and no fail-over (every account would get the same answer)."""
        if CLIENT_TOO_OLD in (env.code, env.biz_code):
            raise UpstreamError(f"upstream refused client version {self.settings.client_version}"
                                " (CLIENT_VERSION_TOO_LOW): raise upstream.client_version",
                                retryable=False)

    async def login(self, account: AccountConfig) -> str:
        try:
            env = await self._json_call("login", "POST", "/api/v0/users/login",
                                        body=login_body(account), proxy=account.proxy)
        except UpstreamCallError as exc:
            raise LoginFailed(ACCOUNT_UNUSABLE, retryable=True, account=account.identifier,
                                    detail=f"login refused: {exc.envelope.message}") from None
        user = env.biz_data.get("user") if isinstance(env.biz_data, dict) else None
        token = user.get("token") if isinstance(user, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise LoginFailed(ACCOUNT_UNUSABLE, account=account.identifier,
                                    detail="login answered without a token")
        return token.strip()

    async def create_session(self, token: str) -> str:
        env = await self._json_call("chat_session/create", "POST", "/api/v0/chat_session/create",
                                    token=token, body={"agent": "chat"})
        data = env.biz_data if isinstance(env.biz_data, dict) else {}
        session = data.get("chat_session") if isinstance(data.get("chat_session"), dict) else data
        sid = session.get("id")
        if not isinstance(sid, str) or not sid.strip():
            raise UpstreamError("chat_session/create returned no session id")
        return sid.strip()

    async def create_pow_challenge(self, token: str, target_path: str = COMPLETION_PATH
                                   ) -> Challenge:
        env = await self._json_call("create_pow_challenge", "POST",
                                    "/api/v0/chat/create_pow_challenge", token=token,
                                    body={"target_path": target_path})
        data = env.biz_data if isinstance(env.biz_data, dict) else {}
        challenge = data.get("challenge")
        if not isinstance(challenge, dict):
            raise UpstreamError("create_pow_challenge returned no challenge")
        return Challenge.from_dict(challenge)

    async def upload_file(self, token: str, pow_header: str, *, data: bytes, name: str,
                          mime_type: str, model_type: str) -> dict[str, Any]:
        """Spec §7: one multipart part ``file``; returns the file object.

        ``model_type`` is ``vision`` for images (the store parses them for
        the vision model), else the request's tier. The capture keeps only
        the size, never the bytes.
        """
        headers = self.headers(token, pow_header)
        del headers["Content-Type"]  # aiohttp writes the multipart boundary
        headers.update({"x-file-size": str(len(data)), "x-thinking-enabled": "1",
                        "x-model-type": model_type})
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name, content_type=mime_type)
        env = await self._call("file/upload_file", "POST", UPLOAD_PATH, headers, form,
                               f"<{len(data)} bytes of {mime_type}>".encode(),
                               proxy=self.proxy_of(token))
        if not isinstance(env.biz_data, dict) or not env.biz_data.get("id"):
            raise UpstreamError("file/upload_file returned no file id")
        return env.biz_data

    async def fetch_files(self, token: str, file_ids: list[str]) -> list[dict[str, Any]]:
        """Spec §7: the current file objects (status polling)."""
        query = urlencode({"file_ids": ",".join(file_ids)})
        env = await self._json_call("file/fetch_files", "GET",
                                    f"/api/v0/file/fetch_files?{query}", token=token)
        data = env.biz_data if isinstance(env.biz_data, dict) else {}
        files = data.get("files")
        return [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []

    async def check_token(self, token: str) -> None:
        """Ask for the first page of the session list (no side effect): an
        UpstreamCallError when the upstream refuses ``token``."""
        await self._json_call("chat_session/fetch_page", "GET", SESSION_LIST_PATH, token=token)

    async def delete_session(self, token: str, session_id: str) -> None:
        await self._json_call("chat_session/delete", "POST", "/api/v0/chat_session/delete",
                              token=token, body={"chat_session_id": session_id})

    async def open_stream(self, path: str, token: str, pow_header: str, body: dict
                          ) -> UpstreamStream:
        """POST a completion or continue and return the open SSE response.

        Anything but HTTP 200 with ``text/event-stream`` is turned into an
        error here, before a single event is read (spec §12).
        """
        # sock_connect, not connect: only the TCP handshake is timed, never a
        # wait for a free connection in the pool.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.timeout_seconds,
                                        sock_read=self.settings.silence_timeout_seconds)
        headers = self.headers(token, pow_header)
        data = orjson.dumps(body)
        capture = self._capture("POST", path, headers, data)
        try:
            resp = await self._session(self.proxy_of(token)).post(
                self._url(path), headers=headers, data=SlicedBytes(data), timeout=timeout)
        except TRANSPORT_ERRORS as exc:
            if capture is not None:
                capture.finish(type(exc).__name__)
            raise UpstreamError(f"{path} failed: {type(exc).__name__}") from None
        if capture is not None:
            capture.set_status(resp.status)
        ctype = resp.headers.get("Content-Type", "").lstrip().lower()  # media types ignore case
        if resp.status == 200 and ctype.startswith("text/event-stream"):
            return UpstreamStream(resp, capture)
        raw, broken = b"", ""
        try:
            raw = await resp.read()
        except TRANSPORT_ERRORS as exc:  # a cut or stalled error body is the upstream's fault
            broken = type(exc).__name__
        finally:
            resp.release()
            if capture is not None:
                capture.append(raw)
                capture.finish(f"HTTP {resp.status}")
        if resp.status == 429:
            raise UpstreamRateLimited("upstream rate limit", retry_after=retry_after(resp.headers))
        if resp.status in (401, 403):  # the token is refused (spec §3): worth a re-login
            raise UpstreamCallError(path.rsplit("/", 1)[-1], parse_envelope(resp.status, raw))
        if resp.status != 200:
            # A 503's Retry-After is how long the account should rest, too.
            wait = retry_after(resp.headers) if "Retry-After" in resp.headers else None
            raise UpstreamError(f"{path} answered HTTP {resp.status}", retry_after=wait)
        if broken:
            raise UpstreamError(f"{path} answered HTTP 200 and its body broke: {broken}")
        env = parse_envelope(resp.status, raw)
        self._refuse_outdated(env)
        raise UpstreamCallError(path.rsplit("/", 1)[-1], env)


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> int:
    """Seconds a 429 or 503 asks to wait: ``Retry-After`` in seconds or as an HTTP
    date (RFC 9110), at least 1, at most the longest cooldown; 5 without one."""
    value = headers.get("Retry-After", "").strip()
    try:
        seconds = float(int(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER
        if when.tzinfo is None:
            return DEFAULT_RETRY_AFTER
        seconds = when.timestamp() - (time.time() if now is None else now)
    return int(min(MAX_COOLDOWN, max(1.0, math.ceil(seconds))))
