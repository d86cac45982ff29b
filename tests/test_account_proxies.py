"""Per-account outbound proxies with real proxy servers on loopback: every
upstream call of an account goes through its proxy (the fake upstream sees
it arrive from that proxy's exit address), a dead proxy marks only its
account, and the admin API manages proxies without showing their secrets."""

from __future__ import annotations

import base64

import aiohttp
import pytest
from admin_util import admin_for
from conftest import ACCOUNTS, Proxy, ProxyFactory
from proxy_servers import (  # noqa: F401  (fixtures)
    HTTP_PROXY_EXIT,
    HTTP_PROXY_PASSWORD,
    SOCKS_PROXY_EXIT,
    free_port,
    http_proxy,
    socks_proxy,
)

from ds2proxy.testing.clients import anthropic_client, openai_client

ALICE, BOB = (email for email, _ in ACCOUNTS)
PASSWORDS = dict(ACCOUNTS)
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4).decode()
ENDPOINTS = {"users/login", "chat_session/create", "chat/create_pow_challenge",
             "chat/completion", "file/upload_file"}


def accounts(alice_proxy: str = "", bob_proxy: str = "") -> dict:
    return {"accounts": [
        {"email": ALICE, "password": PASSWORDS[ALICE], "proxy": alice_proxy},
        {"email": BOB, "password": PASSWORDS[BOB], "proxy": bob_proxy}]}


async def ask_with_image(proxy: Proxy, target: str) -> str:
    client = openai_client(proxy, default_headers={"X-Ds2-Target-Account": target})
    content = [{"type": "text", "text": "describe"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]
    reply = await client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": content}])
    return reply.choices[0].message.content or ""


async def test_each_account_talks_through_its_own_proxy(proxy_factory: ProxyFactory,
                                                        http_proxy: str, socks_proxy: str):
    proxy = await proxy_factory(accounts(alice_proxy=socks_proxy, bob_proxy=http_proxy))
    for target in (ALICE, BOB, ALICE, BOB):
        assert "You said" in await ask_with_image(proxy, target)
    claude = anthropic_client(proxy)
    await claude.messages.create(model="claude-sonnet-4-6", max_tokens=32,
                                 messages=[{"role": "user", "content": "hi"}])
    exits = {ALICE: SOCKS_PROXY_EXIT, BOB: HTTP_PROXY_EXIT}
    seen: dict[str, set[str]] = {ALICE: set(), BOB: set()}
    for call in proxy.fake.calls:
        assert call.account in exits, call.path
        assert call.peer == exits[call.account], (call.path, call.account, call.peer)
        seen[call.account].add(call.endpoint)
    assert seen[ALICE] >= ENDPOINTS and seen[BOB] >= ENDPOINTS


async def test_a_dead_proxy_marks_its_account_only(proxy_factory: ProxyFactory):
    dead = f"socks5://127.0.0.1:{free_port()}"
    proxy = await proxy_factory({**accounts(alice_proxy=dead), "health": {"jitter": 0}})
    client = openai_client(proxy)
    for _ in range(4):
        reply = await client.chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hello"}])
        assert "You said" in reply.choices[0].message.content
    health = proxy.core.pool.health
    assert health.state(ALICE) == "login_failing" and health.state(BOB) == "healthy"
    assert "login failed" in health.view(ALICE)["reason"]
    assert all(c.account != ALICE for c in proxy.fake.calls)


async def test_proxies_are_managed_in_the_admin_api_and_masked(proxy: Proxy, http_proxy: str):
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        reply = await admin.call("PUT", f"/admin/accounts/{ALICE}/proxy",
                                 json={"proxy": "ftp://127.0.0.1:21"})
        assert reply.status == 400 and b"proxy" in reply.raw
        account = (await admin.ok("PUT", f"/admin/accounts/{ALICE}/proxy",
                                  json={"proxy": http_proxy}))["account"]
        assert account["proxy"].startswith("http://proxy-user:…@127.0.0.1:")
        for path in ("/admin/accounts", "/admin/config", "/admin/overview"):
            raw = (await admin.call("GET", path)).raw
            assert HTTP_PROXY_PASSWORD.encode() not in raw, path
        # The account test (login + session) goes through the new proxy at once.
        result = await admin.ok("POST", "/admin/accounts/test", json={"identifier": ALICE})
        assert result["success"], result
        assert {c.peer for c in proxy.fake.calls if c.account == ALICE} == {HTTP_PROXY_EXIT}
        cleared = (await admin.ok("PUT", f"/admin/accounts/{ALICE}/proxy",
                                  json={"proxy": ""}))["account"]
        assert cleared["proxy"] == ""
    assert proxy.core.config.accounts[0].proxy == ""


@pytest.mark.parametrize("url", ["socks5://u:secret@127.0.0.1", "gopher://u:secret@h:1",
                                 "http://u:secret@:8080"])
def test_bad_proxy_urls_are_config_errors_naming_the_field(url: str):
    from ds2proxy.config import ConfigError, parse_config
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.proxy") as info:
        parse_config({"accounts": [{"email": ALICE, "password": "p", "proxy": url}]})
    assert "secret" not in str(info.value)


async def test_changing_a_proxy_lets_the_answer_streaming_through_it_finish(
        proxy_factory: ProxyFactory, socks_proxy: str, http_proxy: str):
    """The old route's session used to be closed on the config change: the
    answer streaming through it stalled until the client gave up."""
    import asyncio

    from ds2proxy.testing import Delivery, Scripted

    proxy = await proxy_factory(accounts(alice_proxy=socks_proxy))
    answer = "one two three four five six seven eight nine ten"
    proxy.fake.enqueue(Scripted(answer=answer, chunk_size=3, delivery=Delivery(chunk_delay=0.05)))
    client = openai_client(proxy, default_headers={"X-Ds2-Target-Account": ALICE})
    seen: list[str] = []
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        async with asyncio.timeout(60):  # a stalled stream fails here, not at the suite's limit
            stream = await client.chat.completions.create(
                model="deepseek-chat", messages=[{"role": "user", "content": "hi"}], stream=True)
            async for chunk in stream:
                seen += [c.delta.content or "" for c in chunk.choices]
                if len(seen) == 3:  # mid-answer: Alice moves to the other proxy
                    await admin.ok("PUT", f"/admin/accounts/{ALICE}/proxy",
                                   json={"proxy": http_proxy})
    assert "".join(seen) == answer
    assert await ask_with_image(proxy, ALICE)
    completions = [c.peer for c in proxy.fake.calls if c.endpoint == "chat/completion"]
    assert completions == [SOCKS_PROXY_EXIT, HTTP_PROXY_EXIT]


async def test_a_socks5h_proxy_resolves_the_upstream_name_itself(proxy_factory: ProxyFactory,
                                                                  fake_upstream, socks_proxy: str):
    """socks5h:// (curl's spelling for remote name resolution) was refused
    as an unknown scheme; it now runs like socks5://, whose names the proxy
    resolves too (the upstream is named here, not given as an address)."""
    remote = socks_proxy.replace("socks5://", "socks5h://")
    named = fake_upstream.base_url.replace("127.0.0.1", "localhost")
    assert named != fake_upstream.base_url
    proxy = await proxy_factory({**accounts(alice_proxy=remote),
                                 "upstream": {"base_url": named}})
    assert "You said" in await ask_with_image(proxy, ALICE)
    assert {c.peer for c in proxy.fake.calls if c.account == ALICE} == {SOCKS_PROXY_EXIT}
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        (account,) = [a for a in (await admin.ok("GET", "/admin/accounts"))["items"]
                      if a["identifier"] == ALICE]
    assert account["proxy"] == remote


async def test_a_dead_proxy_beside_a_disabled_account_reports_its_own_failure(
        proxy_factory: ProxyFactory):
    """The fail-over looked for an untried account, found only the disabled
    one and answered 503 'every upstream account is disabled by the
    operator', blaming the operator for the proxy that failed."""
    import openai

    dead = f"socks5://127.0.0.1:{free_port()}"
    proxy = await proxy_factory(accounts(alice_proxy=dead))
    proxy.core.pool.health.disable(BOB)
    with pytest.raises(openai.APIStatusError) as info:
        await openai_client(proxy).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hello"}])
    assert info.value.status_code == 502, info.value.message
    assert info.value.code != "no_account_available"
    assert proxy.core.pool.health.state(ALICE) == "login_failing"
    assert proxy.fake.calls == []


async def test_a_new_proxy_is_tried_at_once_not_after_the_old_ones_backoff(
        proxy_factory: ProxyFactory, http_proxy: str):
    """The login backoff the dead proxy earned outlived the proxy: after the
    admin set a working one, the account test answered 'login backing off'
    without trying it, and turns kept skipping the account."""
    dead = f"socks5://127.0.0.1:{free_port()}"
    proxy = await proxy_factory({**accounts(alice_proxy=dead), "health": {"jitter": 0}})
    reply = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hello"}])
    assert "You said" in reply.choices[0].message.content  # Bob took it
    assert proxy.core.pool.health.state(ALICE) == "login_failing"
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        await admin.ok("PUT", f"/admin/accounts/{ALICE}/proxy", json={"proxy": http_proxy})
        result = await admin.ok("POST", "/admin/accounts/test", json={"identifier": ALICE})
    assert result["success"], result
    assert proxy.core.pool.health.state(ALICE) == "healthy"
    assert {c.peer for c in proxy.fake.calls if c.account == ALICE} == {HTTP_PROXY_EXIT}
