"""Is an address this machine's own? Used to keep the default admin key off
the network: the server will not listen beyond loopback with it, and pages
only name it to a browser on the same machine."""

from __future__ import annotations

import ipaddress

from aiohttp import web

# A reverse proxy on this machine makes every visitor look local; these
# headers say the request really came from further away.
_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IPs; False for wildcards and names."""
    if not host:
        return False
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_local_client(request: web.Request) -> bool:
    """The browser runs on this machine and no proxy forwarded the request."""
    if any(h in request.headers for h in _FORWARDING_HEADERS):
        return False
    return is_loopback_host(request.remote)


def addressed_by_address(request: web.Request) -> bool:
    """The request names this server as ``localhost`` or an IP literal.

    A page on another site can make its own host name resolve to 127.0.0.1
    (DNS rebinding); its requests are then same-origin, but they name that
    site in ``Host``."""
    host = request.url.host or ""
    if is_loopback_host(host):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
