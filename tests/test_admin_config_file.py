"""The config file as the admin's writes meet it: a file the server may not
write (a read-only mount, a full disk), a file that is a symbolic link, and
what the written file lets others read."""

from __future__ import annotations

import errno
from pathlib import Path

import aiohttp
import pytest
from admin_util import admin_for
from conftest import ADMIN_KEY, ProxyFactory
from test_dashboard_forms import Browserless

from ds2proxy import config_store


def _read_only(path: Path, data: dict) -> None:
    raise OSError(errno.EROFS, "Read-only file system", str(path))


async def test_a_config_the_server_cannot_write_still_starts_with_working_sessions(
        proxy_factory: ProxyFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first start stores the session-signing secret in the config; on a
    read-only mount that write failed and the server did not start at all."""
    monkeypatch.setattr(config_store, "atomic_write_json", _read_only)
    proxy = await proxy_factory()
    assert "jwt_secret" not in proxy.config_path.read_text()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        admin = await admin_for(proxy, http)
        assert (await admin.ok("GET", "/admin/verify"))["valid"] is True
        page = Browserless(proxy, http)
        await page.log_in(ADMIN_KEY)
        status, _, _ = await page.get("/admin/ui/settings")
        assert status == 200
        refused = await admin.call("POST", "/admin/keys", json={"key": "sk-new-key-0001"})
        assert refused.status == 503 and "Read-only file system" in refused.json()["detail"]
