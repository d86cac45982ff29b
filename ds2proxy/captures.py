"""Dev captures: an opt-in ring buffer of recent upstream exchanges.

When ``dev_captures.enabled`` is on, the upstream client records each
exchange it makes (method, URL, request headers and body, status and the raw
response stream, cut at ``max_body_bytes``) so an operator can see what
DeepSeek actually sent when a dialect misbehaves. Nothing secret leaves the
buffer: credentials are redacted every time an item is read, so even a
capture that never finished is safe to show.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

# Headers that carry credentials or a solved proof of work.
SECRET_HEADERS = frozenset({
    "authorization", "x-ds-pow-response", "cookie", "set-cookie", "x-api-key",
    "x-goog-api-key", "proxy-authorization",
})

# JSON members whose string value is a credential, wherever they appear
# (header names too: a client may forward headers in a body, e.g. to an MCP tool).
_SECRET_MEMBER = re.compile(
    r'("(?:password|passwd|token|access_token|refresh_token|id_token|auth_token|api_key|'
    r'apikey|api-key|x-api-key|x-goog-api-key|secret|client_secret|private_key|jwt_secret|'
    r'password_hash|authorization|proxy-authorization|cookie|set-cookie)"\s*:\s*)'
    r'"(?:[^"\\]|\\.)*("|$)',
    re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[^\s\"',;]+", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"([?&](?:key|api_key|token)=)[^&#\s]*", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Blank credentials in JSON members, Bearer values and query strings."""
    text = _SECRET_MEMBER.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: REDACTED if name.lower() in SECRET_HEADERS else redact_text(value)
            for name, value in headers.items()}


def _decode(body: bytes | bytearray | None) -> str:
    return "" if not body else bytes(body).decode("utf-8", errors="replace")


class Capture:
    """One exchange being recorded; the client feeds it as bytes arrive."""

    def __init__(self, capture_id: int, method: str, url: str,
                 request_headers: Mapping[str, str], request_body: bytes | None,
                 max_body_bytes: int) -> None:
        self.id = capture_id
        self.method = method.upper()
        self.url = url
        self.request_headers = dict(request_headers)
        self.request_body = (request_body or b"")[:max_body_bytes]
        self.request_truncated = len(request_body or b"") > max_body_bytes
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._max = max_body_bytes
        self._body = bytearray()
        self.response_bytes = 0
        self.truncated = False
        self.status: int | None = None
        self.error: str | None = None
        self.duration_ms: int | None = None

    def set_status(self, status: int) -> None:
        self.status = status

    def append(self, chunk: bytes) -> None:
        """Keep at most ``max_body_bytes`` of the response, counting the rest."""
        self.response_bytes += len(chunk)
        room = self._max - len(self._body)
        if room > 0:
            self._body += chunk[:room]
        if len(chunk) > max(room, 0):
            self.truncated = True

    def finish(self, error: str | None = None) -> None:
        if self.duration_ms is None:
            self.duration_ms = round((time.monotonic() - self._t0) * 1000)
        if error:
            self.error = redact_text(error)

    def as_dict(self) -> dict[str, Any]:
        """The redacted view an admin may read."""
        return {
            "id": self.id,
            "started_at": self.started_at,
            "method": self.method,
            "url": redact_text(self.url),
            "request_headers": redact_headers(self.request_headers),
            "request_body": redact_text(_decode(self.request_body)),
            "request_truncated": self.request_truncated,
            "status": self.status,
            "response_body": redact_text(_decode(self._body)),
            "response_bytes": self.response_bytes,
            "truncated": self.truncated,
            "duration_ms": self.duration_ms,
            "done": self.duration_ms is not None,
            "error": self.error,
        }


class CaptureBuffer:
    """The newest ``limit`` exchanges; recording only while enabled."""

    def __init__(self, enabled: bool = False, limit: int = 20,
                 max_body_bytes: int = 65536) -> None:
        self._items: deque[Capture] = deque(maxlen=max(1, limit))
        self._ids = itertools.count(1)
        self.enabled = enabled
        self.max_body_bytes = max_body_bytes

    @property
    def limit(self) -> int:
        return self._items.maxlen or 1

    def configure(self, *, enabled: bool, limit: int, max_body_bytes: int) -> None:
        """Apply new settings; a smaller limit keeps the newest items."""
        self.enabled = enabled
        self.max_body_bytes = max_body_bytes
        if max(1, limit) != self.limit:
            self._items = deque(self._items, maxlen=max(1, limit))

    def start(self, method: str, url: str, request_headers: Mapping[str, str],
              request_body: bytes | None) -> Capture | None:
        """Begin recording an exchange, or None when captures are off."""
        if not self.enabled:
            return None
        capture = Capture(next(self._ids), method, url, request_headers, request_body,
                          self.max_body_bytes)
        self._items.append(capture)
        return capture

    def items(self) -> list[dict[str, Any]]:
        """Newest first, redacted."""
        return [c.as_dict() for c in reversed(self._items)]

    def clear(self) -> None:
        self._items.clear()
