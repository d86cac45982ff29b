"""The upstream connection pool: no cap on connections in use, a cap on
idle ones kept for reuse.

A kept-alive connection saves the next upstream call its TCP and TLS
handshakes, so a few are worth keeping; but a burst of a thousand streams
leaves a thousand idle connections behind (parser, buffers and TLS state
each, several megabytes in all) that the next quiet minute never reuses, and
the next burst finds its memory scattered among them. Like a reverse proxy's
``keepalive N`` for its upstreams, at most ``keep_idle`` idle connections
are kept per upstream host; one released beyond that is closed at once.
"""

from __future__ import annotations

from typing import Any

import aiohttp


class BoundedKeepAlive(aiohttp.TCPConnector):
    """``aiohttp.TCPConnector`` (built with ``limit=0``: no cap on connections
    in use) that keeps at most ``keep_idle`` idle connections per host."""

    def __init__(self, *, keep_idle: int, **kwargs: Any) -> None:
        super().__init__(limit=0, limit_per_host=0, **kwargs)
        self.keep_idle = keep_idle

    def idle_count(self, key: Any) -> int:
        """Idle connections kept for the host of ``key`` (a ConnectionKey)."""
        idle = self._conns.get(key)
        return len(idle) if idle is not None else 0

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        # The one place a connection goes back to the idle pool: close it
        # instead when the pool for its host is full.
        if self.idle_count(key) >= self.keep_idle:
            should_close = True
        super()._release(key, protocol, should_close=should_close)
