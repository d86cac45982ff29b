"""Malformed HTTP requests: refused without quoting them back or to the log.

aiohttp's parser puts the offending raw bytes in its message (an
``Authorization: Bearer <key>`` line, a request line with ``?key=``), logs
that message and sends it back as the 400 body. Client SDKs put an error body
into their exceptions, and reverse proxies and error trackers keep it, so a
key would travel into other people's logs. :func:`safe_reason` keeps only the
parser's complaint; :class:`QuietRequestHandler` answers with that alone.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

# The complaint ends where the quoted request starts: at a colon, or at a
# quote (``b'…'``, ``'…'``, ``bytearray(b'…')``) that follows a space.
_QUOTE_START = re.compile(r":|\s+(?:b?['\"]|bytearray\()")
_MAX_REASON = 80


def safe_reason(exc: HttpProcessingError) -> str:
    """The parser's complaint without any request bytes it quotes."""
    lines = (exc.message or "").strip().splitlines()
    reason = _QUOTE_START.split(lines[0], maxsplit=1)[0].strip() if lines else ""
    if not reason or len(reason) > _MAX_REASON:
        return type(exc).__name__
    return reason


class QuietRequestHandler(RequestHandler):
    """aiohttp's connection protocol, with a 400 body that names the fault only."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
            message = f"{status} {phrase}: {safe_reason(exc)} (malformed HTTP request)\n"
        return super().handle_error(request, status, exc, message)


def quieten(handler: RequestHandler) -> RequestHandler:
    """Make one of aiohttp's protocol objects a :class:`QuietRequestHandler`.

    ``web.Server`` builds its protocols itself and offers no hook for the
    class; the subclass adds no state, so switching the class is exact."""
    if type(handler) is RequestHandler:
        handler.__class__ = QuietRequestHandler
    return handler
