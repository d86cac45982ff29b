"""Whose credential failed decides the status: the gateway's own accounts
failing to log in is an upstream fault (502 ``upstream_auth_failed``), never
a 401 that tells an agent its API key is wrong; a refused pass-through token
is the caller's (401). A caller sending two credentials is managed when
either is a configured key."""

from __future__ import annotations

import aiohttp
import pytest
from conftest import ProxyFactory

from ds2proxy.scheduler import TARGET_HEADER
from ds2proxy.testing import HttpFault, Misbehaviour
from ds2proxy.testing.clients import post

BAD_ACCOUNTS = {"accounts": [{"email": "alice@example.com", "password": "wrong"},
                             {"email": "bob@example.com", "password": "wrong too"}]}
ROUTES = {
    "openai": ("/v1/chat/completions", {"model": "deepseek-chat",
                                        "messages": [{"role": "user", "content": "hi"}]}),
    "anthropic": ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 32,
                                   "messages": [{"role": "user", "content": "hi"}]}),
    "gemini": ("/v1beta/models/gemini-2.5-flash:generateContent",
               {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
}


@pytest.mark.parametrize("family", list(ROUTES))
async def test_managed_accounts_that_cannot_log_in_are_a_502(proxy_factory: ProxyFactory,
                                                             family: str):
    proxy = await proxy_factory(BAD_ACCOUNTS)
    path, body = ROUTES[family]
    answer = await post(proxy.url + path, body, {"x-goog-api-key": proxy.key,
                                                 **proxy.headers()})
    assert answer.status == 502
    if family == "gemini":
        assert answer.json()["error"]["status"] == "UNAVAILABLE"
    elif family == "anthropic":
        assert answer.json()["error"]["type"] == "api_error"
    else:
        assert answer.json()["error"]["code"] == "upstream_auth_failed"
    assert "wrong" not in str(answer.json())  # the account's password never leaks
    # Both accounts were tried before giving up.
    tried = {c.body.get("email") for c in proxy.fake.calls_to("users/login")}
    assert tried == {"alice@example.com", "bob@example.com"}
    assert proxy.core.pool.inflight == 0


async def test_a_refused_pass_through_token_is_the_callers_401(proxy):
    path, body = ROUTES["openai"]
    answer = await post(proxy.url + path, body,
                        {"Authorization": "Bearer not-a-deepseek-token"})
    assert answer.status == 401 and answer.json()["error"]["type"] == "authentication_error"


async def test_a_configured_key_wins_over_another_credential_sent_alongside(proxy):
    path, body = ROUTES["anthropic"]
    headers = {"x-api-key": proxy.key, "Authorization": "Bearer some-oauth-token"}
    answer = await post(proxy.url + path, body, headers)
    assert answer.status == 200 and answer.json()["content"][0]["text"]
    # The managed pool served it, not a pass-through of the other token.
    [completion] = proxy.fake.calls_to("chat/completion")
    assert completion.account in ("alice@example.com", "bob@example.com")


NO_PASSWORD = {"accounts": [{"email": "carol@example.com", "token": "stale-token-of-carol"}]}


@pytest.mark.parametrize("overrides, identifiers", [
    (BAD_ACCOUNTS, ("alice@example.com", "bob@example.com")),
    (NO_PASSWORD, ("carol@example.com",)),
], ids=["login-refused", "token-refused-no-password"])
async def test_callers_never_learn_which_account_failed(proxy_factory: ProxyFactory,
                                                        caplog: pytest.LogCaptureFixture,
                                                        overrides: dict,
                                                        identifiers: tuple[str, ...]):
    caplog.set_level("INFO")
    proxy = await proxy_factory(overrides)
    bodies = dict(ROUTES)
    path, body = ROUTES["openai"]
    bodies["openai-stream"] = (path, {**body, "stream": True})
    for family, (path, body) in bodies.items():
        async with aiohttp.ClientSession() as http:
            async with http.post(proxy.url + path, json=body, headers={
                    "x-goog-api-key": proxy.key, **proxy.headers()}) as resp:
                raw = (await resp.read()).decode()
        assert resp.status == 502, (family, raw)
        assert "could not be used" in raw, family
        for identifier in identifiers:
            assert identifier not in raw and identifier.split("@")[0] not in raw, family
    # The operator sees which account and why: in the log and on the dashboard.
    recent = " ".join(e["message"] for e in proxy.core.monitor.snapshot()["recent_errors"])
    assert any(identifier in recent for identifier in identifiers)
    assert any(identifier in caplog.text for identifier in identifiers)


MISTYPED = "sk-mistyped-0123456789abcdef"


@pytest.mark.parametrize("family", list(ROUTES))
async def test_a_mistyped_key_is_called_what_it_is(proxy, family: str):
    path, body = ROUTES[family]
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + path, json=body, headers={
                "Authorization": f"Bearer {MISTYPED}", "x-goog-api-key": MISTYPED}) as resp:
            raw = (await resp.read()).decode()
    assert resp.status == 401
    assert "not one of this server's configured keys" in raw
    assert MISTYPED not in raw and MISTYPED[3:15] not in raw


async def test_without_pass_through_a_mistyped_key_is_called_what_it_is(
        proxy_factory: ProxyFactory):
    proxy = await proxy_factory({"auth": {"allow_passthrough": False}})
    path, body = ROUTES["openai"]
    answer = await post(proxy.url + path, body, {"Authorization": f"Bearer {MISTYPED}"})
    assert answer.status == 401
    assert "not one of this server's configured keys" in answer.json()["error"]["message"]
    assert MISTYPED not in str(answer.json())


@pytest.mark.parametrize("status", [401, 403])
async def test_a_token_refused_with_an_http_401_is_renewed_by_a_login(proxy, status: int):
    """Spec §3: HTTP 401 or 403 means the token is invalid, whatever the
    body. A plain-text 401 was 'a non-JSON body': no re-login, the account
    was cooled down as failing and a request pinned to it got a 502."""
    path, body = ROUTES["openai"]
    alice = proxy.headers(**{TARGET_HEADER: "alice@example.com"})
    assert (await post(proxy.url + path, body, alice)).status == 200
    proxy.fake.revoke_tokens()
    proxy.fake.refused_token_status = status
    answer = await post(proxy.url + path, body, alice)
    assert answer.status == 200, answer.json()
    assert [c.account for c in proxy.fake.calls_to("users/login")] == ["alice@example.com"] * 2
    assert proxy.core.pool.health.state("alice@example.com") == "healthy"
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("status", [401, 403])
async def test_a_pass_through_token_refused_with_an_http_401_is_the_callers_401(
        proxy, status: int):
    proxy.fake.refused_token_status = status
    path, body = ROUTES["openai"]
    answer = await post(proxy.url + path, body, {"Authorization": "Bearer not-a-deepseek-token"})
    assert answer.status == 401 and answer.json()["error"]["type"] == "authentication_error"


async def test_a_completion_refused_with_an_http_401_is_a_pass_through_callers_401(proxy):
    """The same at the completion itself (the stream request), which read a
    401 as an upstream outage (502) whatever its body."""
    token = proxy.fake.issue_token("alice@example.com")
    proxy.fake.misbehave("alice@example.com", Misbehaviour(
        http={"chat/completion": HttpFault(401, body='{"detail": "token expired"}')}))
    path, body = ROUTES["openai"]
    answer = await post(proxy.url + path, body, {"Authorization": f"Bearer {token}"})
    assert answer.status == 401 and answer.json()["error"]["type"] == "authentication_error"
    assert len(proxy.fake.calls_to("chat/completion")) == 1
