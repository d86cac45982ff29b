"""Log formats: ``text`` (the default) and ``json`` (one object per line).

In JSON every record is an object with time, level, logger and message; a
request's end record also carries the request's fields (id, key name, model,
account, status, latency, tokens …). Messages and tracebacks pass through
:func:`ds2proxy.log_redaction.redact`, so no credential reaches the log in
either format, whichever logger wrote them. In text a message is one line:
line breaks and other control characters a client put in a model name or a
path are written escaped, so they cannot forge a record of their own.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import datetime, timezone
from typing import IO

import orjson

from .log_redaction import redact

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Control characters (tab aside) and the Unicode line separators.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with line breaks and control characters written as escapes."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


class TextFormatter(logging.Formatter):
    """The text format: one line per message, credentials masked as in JSON
    (the loggers' own filter guards only ours and aiohttp's)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(redact(record.message))
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:
        return redact(super().formatException(ei))  # type: ignore[arg-type]

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return super().format(record)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            entry["event"] = "request"
            entry.update({k: v for k, v in request.items() if k not in ("request_body", "time")})
            entry["started"] = request.get("time")
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return orjson.dumps(entry, default=str).decode()


def configure(fmt: str = "text", level: str | int = "INFO", stream: IO[str] | None = None
              ) -> None:
    """Point the root logger at ``stream`` (stderr) in ``fmt`` (replacing earlier handlers)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
