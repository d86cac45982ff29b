"""Thousands of accounts: the overview lists at most a screenful (those
needing attention first) with counts and a link to every account, and the
masked config is built in a worker thread, with exactly what the event loop
would have built. Figures: bench/loop_lag_bench.py."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from admin_util import Admin, admin_for
from conftest import Proxy, ProxyFactory
from test_admin_write_races import tag_of
from test_dashboard_forms import Browserless

from ds2proxy.admin import ADMIN, operations
from ds2proxy.admin.dashboard import pretty_json

COUNT = operations.VIEW_IN_THREAD_ACCOUNTS + 50
LAST = f"user{COUNT - 1}@example.com"


@pytest.fixture
async def crowded(proxy_factory: ProxyFactory) -> Proxy:
    accounts = [{"email": f"user{i}@example.com", "password": f"pw-{i}"} for i in range(COUNT)]
    return await proxy_factory({"accounts": accounts})


@pytest.fixture
async def admin(crowded: Proxy) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as http:
        yield await admin_for(crowded, http)


@pytest.fixture
def view_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread each masked config view was built on."""
    seen: list[int] = []
    original = operations.AdminOps.config_view

    def recorded(self: operations.AdminOps) -> dict[str, Any]:
        seen.append(threading.get_ident())
        return original(self)

    monkeypatch.setattr(operations.AdminOps, "config_view", recorded)
    return seen


async def test_the_overview_lists_a_screenful_with_the_troubled_first(admin: Admin):
    await admin.ok("POST", f"/admin/accounts/{LAST}/disable")
    overview = await admin.ok("GET", "/admin/overview")
    shown = [a["identifier"] for a in overview["accounts"]]
    assert len(shown) == operations.OVERVIEW_ROWS and overview["accounts_total"] == COUNT
    assert shown[0] == LAST and overview["accounts"][0]["state"] == "disabled"
    assert shown[1:] == [f"user{i}@example.com" for i in range(operations.OVERVIEW_ROWS - 1)]
    assert overview["queue"]["total"] == COUNT
    assert overview["queue"]["by_state"]["disabled"] == 1


async def test_the_overview_page_counts_every_account_and_links_to_them(crowded: Proxy):
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        page = Browserless(crowded, http)
        await page.log_in()
        status, text, _ = await page.get("/admin/")
    assert status == 200
    table = text[text.index('id="overview-accounts"'):text.index("</tbody>")]
    assert table.count("<tr>") == operations.OVERVIEW_ROWS
    note = re.search(r'id="overview-accounts-shown"(?P<hidden> hidden)?>(?P<body>.*?)</span></p>',
                     text, re.S)
    assert note is not None and not note["hidden"]
    words = re.sub(r"<[^>]+>", "", note["body"])
    assert f"Showing {operations.OVERVIEW_ROWS} of {COUNT}" in words
    assert 'href="/admin/ui/accounts"' in note["body"]


async def test_config_read_is_built_in_a_worker_thread_unchanged(admin: Admin,
                                                                  view_threads: list[int]):
    ops = admin.ctx.ops
    expected, etag = ops.config_view(), ops.config_etag()
    view_threads.clear()
    reply = await admin.call("GET", "/admin/config")
    assert reply.status == 200 and reply.json() == expected
    assert tag_of(reply) == etag and len(expected["accounts"]) == COUNT
    assert view_threads and threading.get_ident() not in view_threads
    assert "pw-1" not in reply.raw.decode()


async def test_config_page_shows_the_same_masked_config_built_off_the_loop(
        crowded: Proxy, view_threads: list[int]):
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        page = Browserless(crowded, http)
        await page.log_in()
        expected = pretty_json(crowded.app[ADMIN].ops.config_view())
        view_threads.clear()
        status, text, _ = await page.get("/admin/ui/config")
    assert status == 200
    shown = re.search(r'<pre class="code" id="masked-config">(.*?)</pre>', text, re.S)
    assert shown is not None and html.unescape(shown[1]) == expected
    assert view_threads and threading.get_ident() not in view_threads
