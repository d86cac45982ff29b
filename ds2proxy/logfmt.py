"""Log formats: ``text`` (the default) and ``json`` (one object per line).

In JSON every record is an object with time, level, logger and message; a
request's end record also carries the request's fields (id, key name, model,
account, status, latency, tokens …). Messages and tracebacks pass through
:func:`ds2proxy.log_redaction.redact`, so no credential reaches the log in
either format, whichever logger wrote them.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

import orjson

from .log_redaction import redact

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


def configure(fmt: str = "text", level: str | int = "INFO") -> None:
    """Point the root logger at stderr in ``fmt`` (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
