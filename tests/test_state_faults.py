"""Redis going away under the shared state: clear 503s in each family's
shape (never a 500 or a hang), usage rows and health changes kept and
written when Redis is back."""

from __future__ import annotations

import time

import aiohttp
import openai
import pytest
from admin_util import admin_for, wait_until
from conftest import ProxyFactory
from test_dashboard_forms import Browserless

from ds2proxy.state.redis_records import RedisRecords
from ds2proxy.state.redis_link import RedisLink
from ds2proxy.testing.redis_server import RedisServer

USER = [{"role": "user", "content": "hello"}]


async def test_redis_down_gives_clear_503s_and_loses_nothing(
        proxy_factory: ProxyFactory, redis_server: RedisServer) -> None:
    proxy = await proxy_factory({
        "state": {"backend": "redis", "redis_url": redis_server.url},
        "keys": [{"name": "limited", "key": "sk-limited", "limits": {"rpm": 100}}]})
    core = proxy.core
    async with aiohttp.ClientSession() as http, aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)) as jar:
        admin = await admin_for(proxy, http)
        page = Browserless(proxy, jar)
        await page.log_in()
        await redis_server.astop()
        started = time.monotonic()
        async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="sk-limited",
                                      max_retries=0) as limited:
            with pytest.raises(openai.APIStatusError) as caught:
                await limited.chat.completions.create(model="deepseek-chat", messages=USER)
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "state_unavailable"
        assert time.monotonic() - started < 10  # bounded by the call deadline, no hang

        reply = await admin.call("POST", "/admin/keys", json={"name": "while-down"})
        assert reply.status == 503 and "unavailable" in reply.json()["detail"]
        assert "Traceback" not in reply.raw.decode()
        for path in ("/admin/usage", "/admin/usage/requests"):
            reply = await admin.call("GET", path)
            assert reply.status == 503 and "unavailable" in reply.json()["detail"]
        for path in ("/admin/", "/admin/ui/usage", "/admin/ui/accounts"):  # read usage
            status, html, _ = await page.get(path)
            assert status == 503 and "unavailable" in html, path

        alice = core.pool.accounts()[0].identifier
        core.pool.health.disable(alice, "disabled while redis was down")

        await redis_server.astart()
        await wait_until(lambda: core.link.ready, timeout=15)
        await core.usage.store.flush()
        # The refused request's usage row waited for Redis and is there now.
        rows, total = await core.usage.store.requests({"key_name": "limited"}, 10, 0)
        assert total == 1 and rows[0]["status"] == 503
        assert rows[0]["error_code"] == "state_unavailable"
        await core.state.flush()
        reply = await admin.call("POST", "/admin/keys", json={"name": "after"})
        assert reply.status == 200

    other = RedisLink(core.config.state)  # another instance reading the shared records
    try:
        saved = await RedisRecords(other).load("account_health")
        assert saved[alice]["state"] == "disabled"
    finally:
        await other.close()
