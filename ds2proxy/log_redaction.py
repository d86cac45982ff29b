"""Keep credentials out of every log line.

aiohttp logs a request it cannot parse with the parser's message, which
quotes the offending raw line (``Authorization: Bearer <key>`` included), and
an oversized header the same way. :class:`RedactingFilter` replaces such a
record with a one-line summary (reason, peer, no request bytes) and, for every
other record on the loggers it guards, masks anything shaped like a
credential: ``Bearer …``, ``Authorization: …``, ``api_key=…``, ``"token": …``.
"""

from __future__ import annotations

import logging
import re

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

from .bad_requests import safe_reason

REDACTED = "[redacted]"

_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\"\\,;]+")
# A cookie header carries several name=value pairs: all of it, to the line's end.
_COOKIE = re.compile(r"(?i)\b((?:set-)?cookie)(['\"]?\s*:\s*['\"]?)(?!\[redacted\])[^\r\n'\"]+")
_NAMED = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-api-key|x-goog-api-key|api[_-]?key|"
    r"access[_-]?token|user[_-]?token|token|password|passwd|secret|cookie|set-cookie|"
    r"x-csrf-token|csrf[_-]?token|admin[_-]?key|key)"
    r"(['\"]?\s*[:=]\s*['\"]?)(?!\[redacted\])(?:(?:bearer|basic)\s+)?[^\s'\"\\,;&}]+")

# Loggers whose records are guarded (ours include the plugins' ``ds2proxy_*``).
GUARDED_PREFIXES = ("aiohttp", "ds2proxy")


def redact(text: str) -> str:
    """``text`` with every credential-shaped value replaced by ``[redacted]``."""
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _COOKIE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _NAMED.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Rewrites records in place; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RequestPayloadError) and isinstance(exc.__cause__,
                                                               HttpProcessingError):
            exc = exc.__cause__  # a broken body (gzip, chunks) met while draining it
        if isinstance(exc, HttpProcessingError):
            self._summarise_bad_request(record, exc)
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: the handler reports it, not us
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True

    @staticmethod
    def _summarise_bad_request(record: logging.LogRecord, exc: HttpProcessingError) -> None:
        _, sep, peer = record.getMessage().rpartition(" from ")
        peer = peer if sep and peer else "a client"
        record.msg = ("malformed HTTP request from %s refused with %s: %s "
                      "(%s; request bytes not logged)")
        record.args = (peer, exc.code, safe_reason(exc), type(exc).__name__)
        record.exc_info, record.exc_text = None, None
        # The client's mistake, not the server's.
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)


_FILTER = RedactingFilter()


def install() -> None:
    """Guard aiohttp's loggers and ours (idempotent; call before serving)."""
    names = {name for name in logging.root.manager.loggerDict
             if name.startswith(GUARDED_PREFIXES)}
    names.update(("aiohttp.server", "aiohttp.access", "aiohttp.web", "aiohttp.internal",
                  "aiohttp.client", "ds2proxy"))
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
