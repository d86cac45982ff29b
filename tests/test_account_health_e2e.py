"""Account health end to end: the official SDKs → ds2proxy → the fake
upstream, with accounts misbehaving on command (rate limits, failing
logins, bans). What a client sees, what the fake received, and the state
each account is left in."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from email.utils import formatdate
from itertools import pairwise

import aiohttp
import anthropic
import openai
import pytest
from admin_util import admin_for, wait_until
from conftest import ACCOUNTS, Proxy, ProxyFactory
from google.genai import errors as genai_errors

from ds2proxy.testing import Delivery, FakeDeepSeek, HttpFault, Misbehaviour, Scripted
from ds2proxy.testing.clients import anthropic_client, gemini_client, openai_client

ALICE, BOB = (email for email, _ in ACCOUNTS)
USER = [{"role": "user", "content": "hello"}]
NO_JITTER = {"health": {"jitter": 0}}


def completions_of(proxy: Proxy, account: str) -> int:
    return sum(1 for c in proxy.fake.calls_to("chat/completion") if c.account == account)


def state(proxy: Proxy, account: str) -> str:
    return proxy.core.pool.health.state(account)


async def ask(proxy: Proxy) -> str:
    reply = await openai_client(proxy).chat.completions.create(model="deepseek-chat", messages=USER)
    return reply.choices[0].message.content or ""


@pytest.mark.parametrize("how", [HttpFault(429), Scripted(hint="rate_limit_reached")],
                         ids=["http-429", "rate-limit-hint"])
async def test_a_rate_limited_account_cools_down_and_traffic_moves_on(proxy: Proxy, how):
    proxy.fake.misbehave(ALICE, Misbehaviour(completion=how))
    for _ in range(5):
        assert "You said" in await ask(proxy)
    assert state(proxy, ALICE) == "cooling_down" and state(proxy, BOB) == "healthy"
    # The hint is retried once in the same session before the account is blamed.
    assert completions_of(proxy, ALICE) == (1 if isinstance(how, HttpFault) else 2)
    view = proxy.core.pool.health.view(ALICE)
    assert view["cooldown_seconds_left"] > 0 and "rate limit" in view["reason"]


async def test_requests_rate_limited_together_back_the_account_off_once(
        proxy_factory: ProxyFactory):
    proxy = await proxy_factory({**NO_JITTER, "runtime": {"account_max_inflight": 3},
                                 "accounts": [{"email": ALICE,
                                               "password": dict(ACCOUNTS)[ALICE]}]})
    assert "You said" in await ask(proxy)  # logged in
    proxy.fake.misbehave(ALICE, Misbehaviour(completion=HttpFault(429)))
    proxy.fake.latency = 0.2  # all three are leased before the first 429 comes back
    replies = await asyncio.gather(*(ask(proxy) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, openai.RateLimitError) for r in replies), replies
    assert len(proxy.fake.calls_to("chat/completion")) == 4
    record = proxy.core.pool.health.record(ALICE)
    assert record.strikes == {"rate_limited": 1} and record.until - record.since == 60
    assert proxy.core.pool.inflight == 0


async def test_every_account_cooling_is_a_429_with_the_earliest_recovery(
        proxy_factory: ProxyFactory):
    proxy = await proxy_factory({"health": {"jitter": 0, "cooldown": {
        "rate_limited": {"base_seconds": 30}}}})
    for account in (ALICE, BOB):
        proxy.fake.misbehave(account, Misbehaviour(completion=HttpFault(429)))
    with pytest.raises(openai.RateLimitError):
        await ask(proxy)
    seen = len(proxy.fake.calls_to("chat/completion"))
    with pytest.raises(anthropic.RateLimitError) as info:
        await anthropic_client(proxy).messages.create(model="claude-sonnet-4-6", max_tokens=32,
                                                      messages=USER)
    assert 28 <= int(info.value.response.headers["retry-after"]) <= 30
    assert info.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(genai_errors.ClientError) as gerr:
        await gemini_client(proxy).aio.models.generate_content(model="gemini-2.5-flash",
                                                               contents="hello")
    assert gerr.value.code == 429
    # Cooling accounts were not touched again.
    assert len(proxy.fake.calls_to("chat/completion")) == seen


async def test_the_account_heals_after_its_cooldown_with_one_trial(proxy_factory: ProxyFactory):
    proxy = await proxy_factory({
        "accounts": [{"email": ALICE, "password": dict(ACCOUNTS)[ALICE]}],
        "runtime": {"account_max_inflight": 2},
        "health": {"jitter": 0, "cooldown": {"rate_limited": {"base_seconds": 0.3}}}})
    health = proxy.core.pool.health
    proxy.fake.misbehave(ALICE, Misbehaviour(completion=HttpFault(429)))
    with pytest.raises(openai.RateLimitError):
        await ask(proxy)
    assert state(proxy, ALICE) == "cooling_down"
    proxy.fake.behave()
    await wait_until(lambda: health.eligible(ALICE))
    proxy.fake.enqueue(Scripted(answer="trial answer", chunk_size=2,
                                delivery=Delivery(chunk_delay=0.2)))
    tasks = [asyncio.create_task(ask(proxy)) for _ in range(3)]
    await wait_until(lambda: health.in_trial(ALICE))
    # While the trial runs, nothing else goes to the account.
    await wait_until(lambda: proxy.core.pool.waiting == 2)
    assert proxy.core.pool.inflight == 1
    answers = await asyncio.gather(*tasks)
    assert "trial answer" in answers
    assert state(proxy, ALICE) == "healthy" and health.record(ALICE).strikes == {}


async def test_a_failing_login_backs_off_instead_of_storming(proxy_factory: ProxyFactory):
    proxy = await proxy_factory(NO_JITTER)
    proxy.fake.misbehave(ALICE, Misbehaviour(login_error=(2, "PASSWORD_OR_USER_NAME_IS_WRONG")))
    replies = await asyncio.gather(*(ask(proxy) for _ in range(6)))
    assert all("You said" in r for r in replies)
    logins = [c for c in proxy.fake.calls_to("users/login") if c.body.get("email") == ALICE]
    assert len(logins) == 1
    assert state(proxy, ALICE) == "login_failing"
    assert "PASSWORD_OR_USER_NAME_IS_WRONG" in proxy.core.pool.health.view(ALICE)["reason"]


async def test_only_failing_logins_left_is_a_502_without_new_login_calls(
        proxy_factory: ProxyFactory):
    proxy = await proxy_factory(NO_JITTER)
    for account in (ALICE, BOB):
        proxy.fake.misbehave(account, Misbehaviour(login_error=(2, "WRONG")))
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as info:
            await ask(proxy)
        assert info.value.status_code == 502
    assert len(proxy.fake.calls_to("users/login")) == 2
    assert int(info.value.response.headers["retry-after"]) >= 59


async def test_a_corrected_password_is_tried_at_once_not_after_the_old_ones_backoff(
        proxy_factory: ProxyFactory):
    """The login backoff a wrong password earned outlived it: after the admin
    imported the right one, turns answered 502 for the rest of the backoff."""
    proxy = await proxy_factory({**NO_JITTER, "accounts": [{"email": ALICE,
                                                            "password": "wrong"}]})
    with pytest.raises(openai.InternalServerError) as info:
        await ask(proxy)
    assert info.value.status_code == 502 and state(proxy, ALICE) == "login_failing"
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        await admin.ok("POST", "/admin/import", json={"accounts": [
            {"email": ALICE, "password": dict(ACCOUNTS)[ALICE]}]})
    assert "You said" in await ask(proxy)
    assert state(proxy, ALICE) == "healthy"
    assert proxy.core.pool.health.record(ALICE).strikes == {}


@pytest.mark.parametrize("account", [
    {"email": ALICE, "token": "revoked-token"},  # nothing to log in with
    {"email": ALICE, "password": "changed-password", "token": "revoked-token"},
], ids=["token-only", "password-refused"])
async def test_turns_finding_a_token_refused_together_count_one_login_failure(
        proxy_factory: ProxyFactory, account: dict):
    proxy = await proxy_factory({**NO_JITTER, "accounts": [account],
                                 "runtime": {"account_max_inflight": 4}})
    client = openai_client(proxy)
    replies = await asyncio.gather(*(
        client.chat.completions.create(model="deepseek-chat", messages=USER)
        for _ in range(4)), return_exceptions=True)
    assert all(isinstance(r, openai.InternalServerError) for r in replies), replies
    record = proxy.core.pool.health.record(ALICE)
    assert record.state == "login_failing" and record.strikes == {"login": 1}
    assert record.until - record.since == 60
    assert len(proxy.fake.calls_to("users/login")) == ("password" in account)
    assert proxy.core.pool.inflight == 0


async def test_a_failed_proactive_relogin_keeps_the_working_token_serving(
        proxy_factory: ProxyFactory, fake_upstream: FakeDeepSeek):
    proxy = await proxy_factory({**NO_JITTER, "accounts": [
        {"email": ALICE, "password": dict(ACCOUNTS)[ALICE],
         "token": fake_upstream.issue_token(ALICE)}]})
    assert "You said" in await ask(proxy)  # the refresh clock starts
    [alice] = proxy.core.pool.accounts()
    alice.token_obtained_at -= 7 * 3600  # older than token_refresh_interval_hours (6)
    proxy.fake.misbehave(ALICE, Misbehaviour(login_error=(7, "CAPTCHA_REQUIRED")))
    for _ in range(2):
        assert "You said" in await ask(proxy)
    # One re-login was tried, refused, and put off; the token, still good, served.
    assert len(proxy.fake.calls_to("users/login")) == 1
    assert state(proxy, ALICE) == "healthy"
    assert len(proxy.fake.calls_to("chat/completion")) == 3
    # Once logins work again, the next due re-login renews the token.
    proxy.fake.behave()
    old_token = alice.token
    alice.token_obtained_at -= 7 * 3600
    assert "You said" in await ask(proxy)
    assert len(proxy.fake.calls_to("users/login")) == 2 and alice.token != old_token
    assert proxy.core.pool.inflight == 0


async def test_a_banned_account_is_cooled_for_auth_and_the_other_serves(proxy: Proxy):
    proxy.fake.misbehave(ALICE, Misbehaviour(banned=True))
    for _ in range(3):
        assert "You said" in await ask(proxy)
    record = proxy.core.pool.health.record(ALICE)
    assert record.state == "cooling_down" and record.kind == "auth"
    assert "invalid token" in record.reason
    # One fresh login was tried before the account was blamed, not one per request.
    logins = [c for c in proxy.fake.calls_to("users/login") if c.body.get("email") == ALICE]
    assert len(logins) == 2


@pytest.mark.parametrize("script, code", [
    (Scripted(hint="input_exceeds_limit"), "context_length_exceeded"),
    (Scripted(answer="", content_filter=True), "content_filter"),
])
async def test_caller_faults_leave_the_account_healthy(proxy_factory: ProxyFactory, script, code):
    proxy = await proxy_factory({"accounts": [{"email": ALICE,
                                              "password": dict(ACCOUNTS)[ALICE]}]})
    proxy.fake.enqueue(script)
    with pytest.raises(openai.BadRequestError) as info:
        await ask(proxy)
    assert info.value.body["code"] == code
    assert state(proxy, ALICE) == "healthy"
    assert proxy.core.pool.health.record(ALICE).strikes == {}
    assert "You said" in await ask(proxy)


RESTED = 900  # seconds a rate-limited upstream asks for, far above any default backoff


def retry_after_header(form: str) -> dict[str, str]:
    if form == "seconds":
        return {"Retry-After": str(RESTED)}
    return {"Retry-After": formatdate(time.time() + RESTED, usegmt=True)}


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_a_rate_limited_login_rests_the_account_for_its_retry_after(
        proxy_factory: ProxyFactory, form: str):
    proxy = await proxy_factory(NO_JITTER)
    limited = HttpFault(429, "slow down", retry_after_header(form))
    proxy.fake.misbehave(ALICE, Misbehaviour(http={"users/login": limited}))
    for _ in range(3):
        assert "You said" in await ask(proxy)
    view = proxy.core.pool.health.view(ALICE)
    assert view["state"] == "login_failing" and "rate limit" in view["reason"]
    assert RESTED - 120 <= view["cooldown_seconds_left"] <= RESTED
    logins = [c for c in proxy.fake.calls_to("users/login") if c.body.get("email") == ALICE]
    assert len(logins) == 1
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("endpoint", ["chat_session/create", "chat/create_pow_challenge"])
@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_a_rate_limited_setup_call_rests_the_account_for_its_retry_after(
        proxy_factory: ProxyFactory, fake_upstream: FakeDeepSeek, endpoint: str, form: str):
    proxy = await proxy_factory({**NO_JITTER, "accounts": [
        {"email": email, "password": pw, "token": fake_upstream.issue_token(email)}
        for email, pw in ACCOUNTS]})
    limited = HttpFault(429, "slow down", retry_after_header(form))
    proxy.fake.misbehave(ALICE, Misbehaviour(http={endpoint: limited}))
    assert "You said" in await ask(proxy)
    record = proxy.core.pool.health.record(ALICE)
    assert record.state == "cooling_down" and record.kind == "rate_limited"
    assert RESTED - 120 <= proxy.core.pool.health.view(ALICE)["cooldown_seconds_left"] <= RESTED
    # Alone, the account's 429 reaches the caller with the wait it was given.
    proxy.fake.misbehave(BOB, Misbehaviour(http={endpoint: limited}))
    proxy.core.pool.health.reset(ALICE)
    with pytest.raises(openai.RateLimitError) as info:
        await ask(proxy)
    assert RESTED - 120 <= int(info.value.response.headers["retry-after"]) <= RESTED
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("endpoint", ["chat/completion", "chat_session/create"])
async def test_an_unavailable_upstream_rests_the_account_for_its_retry_after(
        proxy_factory: ProxyFactory, fake_upstream: FakeDeepSeek, endpoint: str):
    proxy = await proxy_factory({**NO_JITTER, "accounts": [
        {"email": email, "password": pw, "token": fake_upstream.issue_token(email)}
        for email, pw in ACCOUNTS]})
    unavailable = HttpFault(503, "<html>down for maintenance</html>",
                            {"Retry-After": str(RESTED), "Content-Type": "text/html"})
    proxy.fake.misbehave(ALICE, Misbehaviour(http={endpoint: unavailable}))
    assert "You said" in await ask(proxy)
    record = proxy.core.pool.health.record(ALICE)
    assert record.state == "cooling_down" and record.kind == "upstream"
    assert "HTTP 503" in record.reason
    assert RESTED - 120 <= proxy.core.pool.health.view(ALICE)["cooldown_seconds_left"] <= RESTED
    assert proxy.core.pool.inflight == 0


async def test_a_retry_after_beyond_the_cap_survives_the_next_config_write(
        proxy_factory: ProxyFactory, fake_upstream: FakeDeepSeek):
    # Alice holds a token and is told to wait two hours; Bob then logs in,
    # and saving his token rewrites the config, which re-applies the health
    # settings: Alice's cooldown stays what the upstream asked for.
    proxy = await proxy_factory({**NO_JITTER, "accounts": [
        {"email": ALICE, "password": dict(ACCOUNTS)[ALICE],
         "token": fake_upstream.issue_token(ALICE)},
        {"email": BOB, "password": dict(ACCOUNTS)[BOB]}]})
    wait = 7200  # above the rate_limited cap (1800 s)
    limited = HttpFault(429, "slow down", {"Retry-After": str(wait)})
    proxy.fake.misbehave(ALICE, Misbehaviour(http={"chat_session/create": limited}))
    assert "You said" in await ask(proxy)
    assert len(proxy.fake.calls_to("users/login")) == 1  # Bob's, saved to the config
    await proxy.store.settled()
    assert proxy.core.config.accounts[1].token
    assert wait - 120 <= proxy.core.pool.health.view(ALICE)["cooldown_seconds_left"] <= wait


async def test_an_outdated_client_at_login_gets_the_hint_and_fails_no_login(
        proxy_factory: ProxyFactory):
    proxy = await proxy_factory({"upstream": {"client_version": "1.0.0"}})
    proxy.fake.min_client_version = "2.0.4"
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as info:
            await ask(proxy)
        assert info.value.status_code == 502
        assert "raise upstream.client_version" in info.value.body["message"]
    # The server's configuration, not an account: no fail-over, no login backoff.
    assert len(proxy.fake.calls_to("users/login")) == 2
    assert state(proxy, ALICE) == state(proxy, BOB) == "healthy"
    assert proxy.core.pool.inflight == 0


async def test_an_unknown_pow_algorithm_is_a_502_that_cools_no_account(proxy: Proxy):
    # The upstream moved on to a hash this client cannot solve: every account
    # would get the same, so each request is a 502 naming it, no account is
    # tried twice or cooled, and no later request is told "all cooling" (429).
    proxy.fake.pow.algorithm = "DeepSeekHashV2"
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as info:
            await ask(proxy)
        assert info.value.status_code == 502 and info.value.body["code"] == "pow_failed"
        assert "DeepSeekHashV2" in info.value.body["message"]
    assert state(proxy, ALICE) == state(proxy, BOB) == "healthy"
    assert len(proxy.fake.calls_to("chat/create_pow_challenge")) == 3
    assert proxy.fake.calls_to("chat/completion") == []
    assert proxy.core.pool.inflight == 0


async def test_pacing_holds_under_a_burst_of_200(proxy_factory: ProxyFactory,
                                                 fake_upstream: FakeDeepSeek):
    interval, cap = 0.3, 5
    # Accounts that already hold a token: each leased request's first upstream
    # call is its session, so the fake's arrival times show the pacing.
    proxy = await proxy_factory({
        "accounts": [{"email": email, "password": password,
                      "token": fake_upstream.issue_token(email)}
                     for email, password in ACCOUNTS],
        "runtime": {"account_max_inflight": 4, "account_max_queue": 250,
                    "queue_timeout_seconds": 3},
        "health": {"pacing": {"min_interval_seconds": interval, "jitter_seconds": 0.05,
                              "max_per_hour": cap}}})
    client = openai_client(proxy)

    async def one() -> int:
        try:
            await client.chat.completions.create(model="deepseek-chat", messages=USER)
            return 200
        except openai.RateLimitError as exc:
            assert int(exc.response.headers["retry-after"]) > 3000  # the hourly cap
            return 429

    statuses = await asyncio.gather(*(one() for _ in range(200)))
    assert statuses.count(200) == 2 * cap and statuses.count(429) == 200 - 2 * cap
    arrivals: dict[str, list[float]] = defaultdict(list)
    for call in proxy.fake.calls_to("chat_session/create"):
        arrivals[call.account].append(call.at)
    assert {a: len(t) for a, t in arrivals.items()} == {ALICE: cap, BOB: cap}
    assert not proxy.fake.calls_to("users/login")
    for account, times in arrivals.items():
        # The proxy starts requests at least the interval apart, and the fake
        # saw exactly those requests (no more than the hourly cap). The gaps
        # between the fake's arrival times are not compared with the interval:
        # client, proxy and fake share one loaded event loop here, so a
        # request's way from its start to the fake varies by more than that.
        starts = proxy.core.pool.pacer.starts(account)
        assert len(starts) == len(times) == cap
        assert min(gaps(starts)) >= interval


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(sorted(times))]
