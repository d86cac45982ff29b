"""Client connections: a cap on how many are open and timeouts for slow ones.

aiohttp waits for a request head and body as long as the client likes, so
a few hundred clients trickling bytes (or sending nothing) hold sockets and
memory for ever. Each connection's protocol is wrapped here:

* ``server.max_connections`` — past it a new connection gets a 503 and is closed;
* ``server.header_timeout_seconds`` — from the connection (or the first byte
  of the next keep-alive request) until the request head is complete;
* ``server.body_timeout_seconds`` — from the head until the whole body is in;
* ``server.keepalive_timeout_seconds`` — an idle keep-alive connection
  (aiohttp's own keep-alive timer).

A connection past a timeout is closed; a handler still running on it is
cancelled (handler cancellation is on), which releases its lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .bad_requests import quieten
from .config import ServerSettings

log = logging.getLogger("ds2proxy.connections")

BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 32\r\n\r\n"
        b"too many connections; try again\n")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the head and body timers."""

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._between_requests = False

    # -- asyncio protocol (delegated) ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._guard.opened(self)
        self._inner.connection_made(transport)
        self._arm(self._guard.settings.header_timeout_seconds, "request head")

    def data_received(self, data: bytes) -> None:
        if self._between_requests:
            self._between_requests = False
            self._arm(self._guard.settings.header_timeout_seconds, "request head")
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self._guard.closed(self)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # -- request phases (from the middleware) ----------------------------------

    def request_started(self, request: web.Request) -> None:
        """The head is in: the body timer replaces the head timer."""
        if request.content.is_eof():
            self._cancel()
            return
        self._arm(self._guard.settings.body_timeout_seconds, "request body",
                  lambda: not request.content.is_eof())

    def request_finished(self) -> None:
        """Idle until the next request's first byte (aiohttp's keep-alive timer runs)."""
        self._cancel()
        self._between_requests = True

    # -- timers ----------------------------------------------------------------

    def _arm(self, delay: float, what: str, still_waiting: Callable[[], bool] | None = None
             ) -> None:
        self._cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self._expire, what, still_waiting)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, what: str, still_waiting: Callable[[], bool] | None) -> None:
        self._timer = None
        if still_waiting is not None and not still_waiting():
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            log.info("closing a connection from %s: %s not received in time",
                     transport.get_extra_info("peername"), what)
            transport.abort()


class ConnectionGuard:
    """Counts open client connections and wraps each one's protocol."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._open: dict[asyncio.Transport, GuardedConnection] = {}
        self._warned = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The protocol factory to serve with, in place of ``server``."""
        def make() -> asyncio.Protocol:
            if len(self._open) >= self.settings.max_connections:
                return _Refused(self)
            return GuardedConnection(self, quieten(server()))
        return make

    def opened(self, conn: GuardedConnection) -> None:
        assert conn._transport is not None
        self._open[conn._transport] = conn

    def closed(self, conn: GuardedConnection) -> None:
        if conn._transport is not None:
            self._open.pop(conn._transport, None)

    def refused(self) -> None:
        if not self._warned:
            log.warning("connection cap (server.max_connections=%d) reached: refusing new "
                        "connections with 503", self.settings.max_connections)
            self._warned = True

    def connection_of(self, request: web.Request) -> GuardedConnection | None:
        transport = request.transport
        return self._open.get(transport) if transport is not None else None  # type: ignore[arg-type]


class _Refused(asyncio.Protocol):
    """A connection over the cap: a 503, then closed."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._guard.refused()
        transport.write(BUSY)
        transport.close()


GUARD = web.AppKey("connection_guard", ConnectionGuard)


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection when a request's head is in and when it is done."""
    conn = request.config_dict[GUARD].connection_of(request)
    if conn is not None:
        conn.request_started(request)
    try:
        return await handler(request)
    finally:
        if conn is not None:
            conn.request_finished()


class GuardedSite(web.TCPSite):
    """A TCP site whose connections go through a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int,
                 guard: ConnectionGuard) -> None:
        super().__init__(runner, host, port)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._guard.factory(server), self._host,
                                                self._port, reuse_address=True)
