"""Keep credentials out of every log line.

aiohttp logs a request it cannot parse with the parser's message, which
quotes the offending raw line (``Authorization: Bearer <key>`` included), and
an oversized header the same way. :class:`RedactingFilter` replaces such a
record with a one-line summary (reason, peer, no request bytes) and, for every
other record on the loggers it guards, masks anything shaped like a
credential: ``Bearer …``, ``Authorization: …``, ``api_key=…``, ``"token": …``
(any name whose last word is a secret's, a quoted value to its closing
quote) and the password of a URL (``redis://:pw@host``).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

from .bad_requests import safe_reason
from .secret_names import is_secret_name

REDACTED = "[redacted]"

_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\"\\,;]+")
# A cookie header carries several name=value pairs: all of it, to the line's end.
_COOKIE = re.compile(r"(?i)\b((?:set-)?cookie)(['\"]?\s*:\s*['\"]?)(?!\[redacted\])[^\r\n'\"]+")
# A name, then ``:`` or ``=``, then a value. The name is a whole run of name
# characters (matched from its start only, and without backtracking, so a
# long line costs linear time); whether it names a secret is decided in
# Python, by the rule the admin's masked reads use (client_secret,
# new-password, authToken, x-api-key …).
_NAME_SEP = re.compile(r"(?<![\w-])([\w-]++)(['\"]?\s*[:=]\s*)")
_VALUE = re.compile(
    r"(?!\[redacted\])"
    # A quoted value is masked to its closing quote (a password may hold spaces).
    r"(?:\"(?:[^\"\\\r\n]|\\.)*+\"|'(?:[^'\\\r\n]|\\.)*+'"
    r"|(?i:(?:bearer|basic)\s+)?[^\s'\"\\,;&}]++)")
# The password of a URL's user part: redis://:pw@host, socks5://user:pw@host
# (one already masked as "…" by the code logging it stays so).
_URL_PASSWORD = re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*+://[^\s/:@'\"]*+:)"
                           r"(?!\[redacted\]@|…@)[^\s/@'\"]++(?=@)")
# Every secret's name holds one of these: a line with none is left alone.
_HINT = re.compile(r"(?i)pass|secret|token|key|cookie|authori|credential")
# Header names that are secrets whatever the rule says of their last word.
_HEADERS = frozenset({"cookie", "set-cookie", "x-csrf-token"})

# Loggers whose records are guarded (ours include the plugins' ``ds2proxy_*``).
GUARDED_PREFIXES = ("aiohttp", "ds2proxy")


def redact(text: str) -> str:
    """``text`` with every credential-shaped value replaced by ``[redacted]``."""
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _COOKIE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _named_values(text) if _HINT.search(text) else text


@lru_cache(maxsize=4096)
def _secret(name: str) -> bool:
    """Log lines repeat their names: each is judged once."""
    return is_secret_name(name) or name.lower() in _HEADERS


def _named_values(text: str) -> str:
    """Each value whose name is a secret's, masked. Names are found apart from
    their values, so a value that is not masked ('ValueError: api_key=…') is
    still searched for names of its own."""
    out, cursor = [], 0
    for found in _NAME_SEP.finditer(text):
        if found.start() < cursor or not _secret(found.group(1)):
            continue
        value = _VALUE.match(text, found.end())
        if value is None or not value.group():
            continue
        quote = value.group()[0] if value.group()[0] in "\"'" else ""
        out += [text[cursor:found.end()], quote, REDACTED, quote]
        cursor = value.end()
    out.append(text[cursor:])
    return "".join(out)


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
