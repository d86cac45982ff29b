"""A key's usage follows it across renames: its page (recent requests,
charts) and the request log and summary filtered by its name read its rows by
the key's ref, not by the name each row was recorded under; a new key given
an old name does not inherit them. Older stores are migrated."""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

import aiohttp
import orjson
import pytest

from admin_util import Admin, admin_for
from conftest import ProxyFactory, RedisServer
from test_dashboard_forms import Browserless
from test_named_keys import ask, new_key
from ds2proxy.state.redis_usage import SEP, RedisUsage
from ds2proxy.state.usage import SQLiteUsage
from ds2proxy.testing.clients import openai_client

pytestmark = pytest.mark.timeout(60)


async def key_page(admin: Admin, key_id: str) -> str:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        browser = Browserless(admin.proxy, http)
        await browser.log_in()
        status, page, _ = await browser.get(f"/admin/ui/keys/{key_id}")
    assert status == 200
    return page


def charted(page: str, metric: str) -> list[int]:
    """The totals the page's charts of ``metric`` show (last hour, last day)."""
    return [int(n) for n in re.findall(
        rf'data-chart="{metric}"><figcaption>[^<]*<span class="num" data-total>(\d+)<', page)]


async def requests_of(admin: Admin, name: str) -> dict[str, Any]:
    return await admin.ok("GET", f"/admin/usage/requests?key_name={name}")


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_a_renamed_keys_page_still_shows_its_requests_from_before(
        proxy_factory: ProxyFactory, backend: str, request: pytest.FixtureRequest) -> None:
    """Rows kept only the key's name: after a rename its page showed no
    request and flat charts for everything before the rename."""
    overrides: dict[str, Any] = {}
    if backend == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        overrides = {"state": {"backend": "redis", "redis_url": redis.url}}
    proxy = await proxy_factory(overrides)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        made = await new_key(admin, name="team")
        client = openai_client(proxy, key=made["key"])
        for _ in range(2):
            await ask(client)
        await admin.ok("PATCH", f"/admin/keys/{made['id']}", json={"name": "crew"})
        await ask(client)
        other = await new_key(admin, name="team")  # the old name, a new key
        await ask(openai_client(proxy, key=other["key"]))
        await proxy.core.usage.store.flush()

        mine = await requests_of(admin, "crew")
        assert mine["total"] == 3
        assert [r["key_name"] for r in mine["requests"]] == ["crew", "team", "team"]
        assert (await requests_of(admin, "team"))["total"] == 1
        summary = await admin.ok("GET", "/admin/usage?window=hour&key_name=crew")
        assert sum(b["requests"] for b in summary["series"]) == 3
        assert {t["name"]: t["requests"] for t in summary["totals"]["key_name"]} == {
            "team": 2, "crew": 1}

        page = await key_page(admin, made["id"])
        assert charted(page, "requests") == [3, 3]
        for row in mine["requests"]:
            assert f'href="/admin/ui/usage/{row["id"]}"' in page
        newcomer = await key_page(admin, other["id"])
        assert charted(newcomer, "requests") == [1, 1]


# The usage tables as a store written before rows kept the key's ref had them.
OLD_SCHEMA = """
CREATE TABLE requests (
  id INTEGER PRIMARY KEY, time REAL NOT NULL, request_id TEXT, key_name TEXT, family TEXT,
  route TEXT, method TEXT, model TEXT, native_model TEXT, account TEXT, status INTEGER,
  error_code TEXT, error_message TEXT, latency_ms REAL, ttfb_ms REAL, prompt_tokens INTEGER,
  completion_tokens INTEGER, reasoning_tokens INTEGER, tool_calls INTEGER, stream INTEGER,
  request_body TEXT, served_by TEXT);
CREATE TABLE rollups (
  grain TEXT NOT NULL, bucket INTEGER NOT NULL, key_name TEXT NOT NULL, model TEXT NOT NULL,
  account TEXT NOT NULL, family TEXT NOT NULL, requests INTEGER NOT NULL, errors INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
  reasoning_tokens INTEGER NOT NULL, latency_ms_sum REAL NOT NULL,
  PRIMARY KEY (grain, bucket, key_name, model, account, family));
"""


def old_store(path: str, now: float) -> None:
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    for name in ("team", "team", "gone", "pass-through"):
        db.execute("INSERT INTO requests (time, key_name, family, route, model, account, "
                   "status, error_code, latency_ms, prompt_tokens, completion_tokens, "
                   "reasoning_tokens) VALUES (?, ?, 'openai', '/v1/chat/completions', "
                   "'deepseek-chat', 'a', 200, '', 5, 3, 4, 0)", (now, name))
    for grain, size in (("minute", 60), ("hour", 3600), ("day", 86400)):
        for name, count in (("team", 2), ("gone", 1), ("pass-through", 1)):
            db.execute("INSERT INTO rollups VALUES (?, ?, ?, 'deepseek-chat', 'a', 'openai', "
                       "?, 0, ?, ?, 0, 10)", (grain, int(now // size) * size, name, count,
                                              3 * count, 4 * count))
    db.commit()
    db.close()


async def test_an_older_store_gives_its_rows_the_ref_of_the_key_named_so(tmp_path) -> None:
    """A store from before: its rows are given, once, the ref of the key that
    has their name at the upgrade; rows of names no key has get none, and a
    key given such a name later does not take them."""
    path, now = str(tmp_path / "usage.db"), time.time()
    old_store(path, now)
    store = SQLiteUsage(path)
    try:
        await store.adopt_refs({"team": "ref-team"})
        rows, total = await store.requests({"key_ref": "ref-team"}, 10, 0)
        assert total == 2 and {r["key_name"] for r in rows} == {"team"}
        series = await store.series("hour", now - 3600, key_ref="ref-team")
        assert [(s["requests"], s["prompt_tokens"]) for s in series] == [(2, 6)]
        by_key = await store.totals("key_name", "day", now - 86400)
        assert {t["name"]: t["requests"] for t in by_key} == {
            "team": 2, "gone": 1, "pass-through": 1}
        # A new row of the same key, bucket and dimensions adds to the adopted cell.
        store.record({"time": now, "request_id": "r", "key_name": "crew", "family": "openai",
                      "route": "/v1/chat/completions", "method": "POST",
                      "model": "deepseek-chat", "native_model": "", "account": "a",
                      "status": 200, "error_code": "", "error_message": "",
                      "latency_ms": 1.0, "ttfb_ms": 1.0, "prompt_tokens": 1,
                      "completion_tokens": 1, "reasoning_tokens": 0, "tool_calls": 0,
                      "stream": False, "request_body": "", "served_by": "pool",
                      "key_ref": "ref-team"})
        await store.adopt_refs({"gone": "ref-new"})  # a later start: nothing left to adopt
        assert (await store.requests({"key_ref": "ref-new"}, 10, 0))[1] == 0
        assert not await store.series("hour", now - 3600, key_ref="ref-new")
        series = await store.series("hour", now - 3600, key_ref="ref-team")
        assert [s["requests"] for s in series] == [3]
    finally:
        await store.close()


async def test_an_older_redis_store_gives_its_rows_the_ref_of_the_key_named_so(open_link
                                                                               ) -> None:
    """On Redis the rows and rollup cells written before (no ref, four
    dimensions) take their ref from the names the keys had at the first
    start that keeps refs; later starts do not change it."""
    link = await open_link()
    store, now = RedisUsage(link), time.time()
    client = link.client
    row = {"id": 1, "time": now, "key_name": "team", "status": 200, "error_code": ""}
    await client.zadd(link.key("usage", "rows"), {orjson.dumps(row): 1})
    bucket = int(now // 3600) * 3600
    await client.hincrby(link.key("usage", "roll", "hour", str(bucket)),
                         SEP.join(("team", "deepseek-chat", "a", "openai", "requests")), 2)
    await client.zadd(link.key("usage", "buckets", "hour"), {str(bucket): bucket})
    await store.adopt_refs({"team": "ref-team"})
    await store.adopt_refs({"team": "ref-later"})  # a later start, the name reused
    rows, total = await store.requests({"key_ref": "ref-team"}, 10, 0)
    assert total == 1 and rows[0]["key_name"] == "team"
    assert (await store.requests({"key_ref": "ref-later"}, 10, 0))[1] == 0
    series = await store.series("hour", now - 3600, key_ref="ref-team")
    assert [s["requests"] for s in series] == [2]
    assert not await store.series("hour", now - 3600, key_ref="ref-later")
