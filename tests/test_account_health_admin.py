"""Account health for the operator: the admin API's per-account state and
overrides, overview counts by state, the queue's real capacity, and state
that survives a restart (the SQLite file beside the config)."""

from __future__ import annotations

import aiohttp
import openai
import pytest
from admin_util import admin_for
from conftest import ACCOUNTS, Proxy, ProxyFactory

from ds2proxy.app import create_app, start_server
from ds2proxy.config_store import ConfigStore
from ds2proxy.state.store import state_path_for
from ds2proxy.testing import Delivery, HttpFault, Misbehaviour, Scripted
from ds2proxy.testing.clients import openai_client

ALICE, BOB = (email for email, _ in ACCOUNTS)
USER = [{"role": "user", "content": "hello"}]


async def ask(proxy: Proxy, target: str = "") -> None:
    headers = {"X-Ds2-Target-Account": target} if target else None
    client = openai_client(proxy, default_headers=headers)
    await client.chat.completions.create(model="deepseek-chat", messages=USER)


def by_id(listing: dict) -> dict[str, dict]:
    return {a["identifier"]: a for a in listing["items"]}


async def test_accounts_listing_shows_state_reason_and_activity(proxy: Proxy):
    proxy.fake.misbehave(ALICE, Misbehaviour(completion=HttpFault(429)))
    await ask(proxy)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        accounts = by_id(await admin.ok("GET", "/admin/accounts"))
    alice, bob = accounts[ALICE], accounts[BOB]
    assert alice["state"] == "cooling_down" and "rate limit" in alice["reason"]
    assert alice["cooldown_seconds_left"] > 0 and alice["last_failure"]
    assert bob["state"] == "healthy" and bob["last_success"] and bob["requests_today"] == 1
    assert "password" not in str(accounts) or "has_password" in str(accounts)
    assert "pw-alice" not in str(accounts)


async def test_disable_enable_reset_through_the_api_apply_at_once(proxy: Proxy):
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        reply = await admin.ok("POST", f"/admin/accounts/{ALICE}/disable")
        assert reply["account"]["state"] == "disabled"
        for _ in range(3):
            await ask(proxy)
        assert {c.account for c in proxy.fake.calls_to("chat/completion")} == {BOB}
        overview = await admin.ok("GET", "/admin/overview")
        assert overview["queue"]["by_state"] == {"healthy": 1, "cooling_down": 0,
                                                 "login_failing": 0, "disabled": 1}
        assert overview["queue"]["available"] == 1
        reply = await admin.ok("POST", f"/admin/accounts/{ALICE}/enable")
        assert reply["account"]["state"] == "healthy"

        proxy.fake.misbehave(ALICE, Misbehaviour(completion=HttpFault(429)))
        with pytest.raises(openai.RateLimitError):
            await ask(proxy, target=ALICE)
        assert proxy.core.pool.health.state(ALICE) == "cooling_down"
        with pytest.raises(openai.RateLimitError) as info:
            await ask(proxy, target=ALICE)  # pinned to a cooling account
        assert info.value.body["code"] == "accounts_cooling_down"
        proxy.fake.behave()
        reply = await admin.ok("POST", f"/admin/accounts/{ALICE}/reset")
        assert reply["account"]["state"] == "healthy"
        assert reply["account"]["cooldown_seconds_left"] == 0
        await ask(proxy, target=ALICE)
        missing = await admin.call("POST", "/admin/accounts/nobody@example.com/reset")
        assert missing.status == 404
    with pytest.raises(openai.BadRequestError) as unknown:
        await ask(proxy, target="nobody@example.com")
    assert unknown.value.body["code"] == "unknown_account"


async def test_an_account_that_cannot_log_in_is_not_counted_available(proxy: Proxy):
    proxy.fake.misbehave(ALICE, Misbehaviour(login_error=(2, "PASSWORD_OR_USER_NAME_IS_WRONG")))
    await ask(proxy)
    await ask(proxy)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        queue = (await admin.ok("GET", "/admin/overview"))["queue"]
        assert queue["available"] == 1 and queue["by_state"]["login_failing"] == 1
        status = await admin.ok("GET", "/admin/queue/status")
        assert status["available"] == 1 and status["available_accounts"] == [BOB]
        listing = by_id(await admin.ok("GET", "/admin/accounts"))
        assert "PASSWORD_OR_USER_NAME_IS_WRONG" in listing[ALICE]["reason"]


async def test_queue_status_counts_the_global_limit(proxy_factory: ProxyFactory):
    proxy = await proxy_factory({"runtime": {"account_max_inflight": 2,
                                             "global_max_inflight": 1}})
    pool = proxy.core.pool
    lease = await pool.acquire()
    try:
        async with aiohttp.ClientSession() as http:
            admin = await admin_for(proxy, http)
            status = await admin.ok("GET", "/admin/queue/status")
        assert status["available"] == 0 and status["free_slots"] == 0
        assert status["in_use"] == 1 and status["global_max_inflight"] == 1
    finally:
        lease.release()
    assert pool.status()["free_slots"] == 1


async def test_state_survives_a_restart(proxy_factory: ProxyFactory):
    proxy = await proxy_factory({"health": {"jitter": 0}})
    proxy.fake.misbehave(ALICE, Misbehaviour(completion=HttpFault(429)))
    await ask(proxy)
    proxy.core.pool.health.disable(BOB, "disabled by the operator")
    before = proxy.core.pool.health.record(ALICE).until
    await proxy.server.close()
    assert state_path_for(proxy.config_path).is_file()

    app = create_app(ConfigStore.from_sources(str(proxy.config_path), {}),
                     admin_key=proxy.admin_key)
    server = await start_server(app)
    try:
        restarted = Proxy(server.url, proxy.key, proxy.admin_key, proxy.fake, app,
                          proxy.store, proxy.config_path, server)
        health = restarted.core.pool.health
        assert health.state(ALICE) == "cooling_down" and health.record(ALICE).until == before
        assert health.state(BOB) == "disabled"
        with pytest.raises(openai.RateLimitError) as info:
            await ask(restarted)
        assert info.value.body["code"] == "accounts_cooling_down"
    finally:
        await server.close()


async def test_health_settings_change_at_once_through_the_settings_api(proxy: Proxy):
    proxy.fake.misbehave(ALICE, Misbehaviour(completion=HttpFault(429)))
    await ask(proxy)
    health = proxy.core.pool.health
    assert health.view(ALICE)["cooldown_seconds_left"] > 40
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        current = (await admin.ok("GET", "/admin/settings"))["health"]
        assert current["cooldown.rate_limited.base_seconds"] == 60
        assert current["pacing.max_per_hour"] == 0
        await admin.ok("PUT", "/admin/settings", json={"health": {
            "cooldown.rate_limited.base_seconds": 2, "cooldown.rate_limited.max_seconds": 5,
            "pacing.max_per_hour": 2}})
        bad = await admin.call("PUT", "/admin/settings",
                               json={"health": {"jitter": -1}})
        assert bad.status == 400 and b"health.jitter" in bad.raw
    # A lower cap shortens the running cooldown; pacing applies to the next request.
    assert health.view(ALICE)["cooldown_seconds_left"] <= 5
    assert proxy.core.pool.pacer.settings.max_per_hour == 2


@pytest.mark.parametrize("path", ["cooldown.login.base_seconds", "cooldown.auth.max_seconds",
                                  "pacing.min_interval_seconds", "pacing.jitter_seconds"])
async def test_absurd_health_times_are_a_400(proxy: Proxy, path: str):
    """A 1e300 s cooldown was taken, and once an account failed every read of
    the accounts (its seconds left no longer fit a JSON integer) was a 500."""
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        before = proxy.config_path.read_bytes()
        reply = await admin.call("PUT", "/admin/settings", json={"health": {path: 1e300}})
        assert reply.status == 400 and reply.json()["field"] == f"health.{path}"
        assert proxy.config_path.read_bytes() == before


async def test_the_longest_cooldown_still_reads_back(proxy: Proxy):
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        longest = {"cooldown.login.base_seconds": 30 * 86400,
                   "cooldown.login.max_seconds": 30 * 86400}
        await admin.ok("PUT", "/admin/settings", json={"health": longest})
        await admin.ok("POST", "/admin/accounts", json={"email": "wrong@example.com",
                                                        "password": "not-its-password"})
        tested = await admin.ok("POST", "/admin/accounts/test",
                                json={"identifier": "wrong@example.com"})
        assert tested["success"] is False
        listing = await admin.ok("GET", "/admin/accounts?page_size=100")
        wrong = by_id(listing)["wrong@example.com"]
        assert wrong["state"] != "healthy" and wrong["cooldown_seconds_left"] > 86400
        assert (await admin.call("GET", "/admin/overview")).status == 200


async def _delete(admin, account: str) -> None:
    await admin.ok("DELETE", f"/admin/accounts/{account}")


async def _disable(admin, account: str) -> None:
    await admin.ok("POST", f"/admin/accounts/{account}/disable")


@pytest.mark.parametrize("sideline", [_delete, _disable], ids=["deleted", "disabled"])
async def test_a_turn_failing_on_an_account_taken_out_mid_stream_gives_it_no_verdict(
        proxy: Proxy, sideline):
    proxy.fake.enqueue(Scripted(answer="an answer cut short", chunk_size=2,
                                delivery=Delivery(chunk_delay=0.05, drop_after=12)))
    client = openai_client(proxy, default_headers={"X-Ds2-Target-Account": ALICE})
    stream = await client.chat.completions.create(model="deepseek-chat", messages=USER,
                                                  stream=True)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        await anext(aiter(stream))
        await sideline(admin, ALICE)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
        assert proxy.core.pool.inflight == 0
        if sideline is _delete:
            # Added back, the account starts afresh: the cut turn on the
            # deleted one left no cooldown behind to come back with it.
            await admin.ok("POST", "/admin/accounts",
                           json={"email": ALICE, "password": dict(ACCOUNTS)[ALICE]})
            accounts = by_id(await admin.ok("GET", "/admin/accounts"))
            assert accounts[ALICE]["state"] == "healthy", accounts[ALICE]
            assert accounts[ALICE]["last_failure"] is None
        else:
            accounts = by_id(await admin.ok("GET", "/admin/accounts"))
            assert accounts[ALICE]["state"] == "disabled"
            assert accounts[ALICE]["reason"] == "disabled by the operator"
    assert proxy.core.pool.status()["in_use"] == 0
