"""Per-account outbound proxies: one aiohttp session per proxy URL.

An account may name an HTTP or SOCKS proxy; every upstream call made for it
(login, session, PoW challenge, completion, continue, upload, cleanup) goes
through that proxy's session, built on an ``aiohttp_socks`` connector
(HTTP proxies are tunnelled with CONNECT). Accounts without a proxy share
the direct session. A session whose proxy no account names any more (the
admin changed or removed it) is set aside on hot reload, not closed: answers
still streaming through it finish, its idle connections lapse on their own
keep-alive timeout, and it is closed at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

import aiohttp
import aiohttp_socks
import python_socks
from aiohttp_socks import ProxyConnector

log = logging.getLogger("ds2proxy.upstream")

# What a broken route raises: aiohttp's own errors, timeouts, and the proxy
# library's refusals (a dead proxy, bad proxy credentials).
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, python_socks.ProxyError,
                    python_socks.ProxyConnectionError, python_socks.ProxyTimeoutError,
                    aiohttp_socks.ProxyError, aiohttp_socks.ProxyConnectionError,
                    aiohttp_socks.ProxyTimeoutError)


def mask_proxy(url: str) -> str:
    """The proxy URL without its password (``socks5://user:…@host:port``)."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        where = f"{parts.hostname}:{parts.port}"
    except ValueError:
        return "(invalid proxy URL)"
    user = f"{parts.username}:…@" if parts.username else ""
    return f"{parts.scheme}://{user}{where}"


def _connector(url: str) -> ProxyConnector:
    """The connector of a proxy URL. ``socks5h`` (curl's name for a SOCKS5
    proxy that resolves host names itself) is SOCKS5 with remote resolution,
    which ``socks5`` here does too: names are never looked up locally."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "socks5h":
        return ProxyConnector.from_url(f"socks5://{rest}", rdns=True, limit=0, limit_per_host=0)
    # No connection cap, like the direct session: the pool bounds turns.
    return ProxyConnector.from_url(url, limit=0, limit_per_host=0)


class ProxySessions:
    def __init__(self, direct: aiohttp.ClientSession) -> None:
        self.direct = direct
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._retired: list[aiohttp.ClientSession] = []

    def session(self, proxy: str) -> aiohttp.ClientSession:
        """The session for ``proxy`` ("" = direct), created on first use."""
        if not proxy:
            return self.direct
        session = self._sessions.get(proxy)
        if session is None or session.closed:
            connector = _connector(proxy)
            session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
            self._sessions[proxy] = session
            log.info("outbound proxy %s opened", mask_proxy(proxy))
        return session

    def retire(self, keep: Iterable[str]) -> None:
        """Set aside the sessions of proxies no account names (closing one
        would cut, or stall, the answers streaming through it)."""
        wanted = set(keep)
        for proxy in [p for p in self._sessions if p not in wanted]:
            self._retired.append(self._sessions.pop(proxy))
            log.info("outbound proxy %s retired", mask_proxy(proxy))

    async def close(self) -> None:
        self.retire(())
        sessions, self._retired = self._retired, []
        await asyncio.gather(*(s.close() for s in sessions))
