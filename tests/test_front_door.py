"""Where a newcomer lands: ``GET /`` leads to the dashboard."""

from __future__ import annotations

import aiohttp
from conftest import Proxy


async def test_root_redirects_to_the_dashboard(proxy: Proxy):
    async with aiohttp.ClientSession() as http:
        for method in ("GET", "HEAD"):
            async with http.request(method, proxy.url + "/", allow_redirects=False) as resp:
                assert resp.status == 302 and resp.headers["Location"] == "/admin/"
        async with http.get(proxy.url + "/") as resp:
            # Followed through to the login page of a stranger's browser.
            assert resp.status == 200 and resp.url.path == "/admin/ui/login"
            assert "text/html" in resp.headers["Content-Type"]
