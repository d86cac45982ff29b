"""Honest errors when every account fails before any output: a 502/504 in
the family's shape naming what broke (never a 429 that makes an outage look
like rate limiting), at most ``upstream.max_attempts`` accounts, and one
deadline for the whole pre-output phase however many accounts are tried."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable

import aiohttp
import pytest

from ds2proxy.testing import (
    Delivery,
    EnvelopeFault,
    FakeAccount,
    HttpFault,
    Misbehaviour,
    Scripted,
)
from ds2proxy.testing.clients import Reply
from ds2proxy.testing.clients import post as raw_post

from admin_util import wait_until
from conftest import ACCOUNTS, Proxy, ProxyFactory
from dsml_util import dsml

DROPPED = Scripted(answer="never seen", delivery=Delivery(drop_after=0))
RESET = Scripted(answer="never seen", delivery=Delivery(drop_after=1, abort=True))

CASES = {
    "openai": ("/v1/chat/completions",
               {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}]}),
    "anthropic": ("/v1/messages",
                  {"model": "claude-sonnet-4-6", "max_tokens": 64,
                   "messages": [{"role": "user", "content": "hi"}]}),
    "gemini": ("/v1beta/models/gemini-2.5-flash:generateContent",
               {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
}


async def proxy_with_accounts(proxy_factory: ProxyFactory, fake_upstream, count: int,
                              **upstream: object) -> Proxy:
    accounts = [{"email": email, "password": pw} for email, pw in ACCOUNTS]
    for n in range(len(accounts), count):
        email, pw = f"extra{n}@example.com", f"pw-extra{n}"
        fake_upstream.add_account(FakeAccount(pw, email=email))
        accounts.append({"email": email, "password": pw})
    return await proxy_factory({"accounts": accounts, "upstream": upstream})


async def post(proxy: Proxy, family: str, *, stream: bool = False) -> Reply:
    path, body = CASES[family]
    body = dict(body)
    if stream and family == "gemini":
        path = path.replace(":generateContent", ":streamGenerateContent") + "?alt=sse"
    elif stream:
        body["stream"] = True
    return await raw_post(proxy.url + path, body,
                          {**proxy.headers(), "x-goog-api-key": proxy.key})


def error_message(family: str, body: dict) -> str:
    if family == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
    if family == "gemini":
        assert body["error"]["status"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    return body["error"]["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("family", list(CASES))
async def test_a_stream_dropped_on_every_account_is_a_502_saying_what_broke(
        proxy_factory, fake_upstream, family, stream):
    proxy = await proxy_with_accounts(proxy_factory, fake_upstream, 3)
    fake_upstream.enqueue(DROPPED, DROPPED, DROPPED)
    answer = await post(proxy, family, stream=stream)
    assert answer.status == 502, answer.json()
    message = error_message(family, answer.json())
    assert "failed on 3 accounts" in message
    assert "ended before the answer was complete" in message
    assert "Retry-After" not in answer.headers
    assert "rate_limit" not in json.dumps(answer.json())
    calls = fake_upstream.calls_to("chat/completion")
    assert len({c.account for c in calls}) == 3
    assert proxy.core.pool.inflight == 0


async def test_a_connection_reset_on_every_account_names_the_break(
        proxy_factory, fake_upstream):
    proxy = await proxy_with_accounts(proxy_factory, fake_upstream, 3)
    fake_upstream.enqueue(RESET, RESET, RESET)
    answer = await post(proxy, "openai")
    assert answer.status == 502
    assert answer.json()["error"]["code"] == "upstream_error"
    assert "upstream stream broke: ClientPayloadError" in answer.json()["error"]["message"]
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("status", [502, 200])
async def test_an_error_body_cut_short_fails_over_and_names_the_break(
        proxy, fake_upstream, status, stream):
    """A reply that is not a stream and whose body breaks off (a proxy dying
    mid-reply) is the upstream's failure like any other: it was an
    'internal error' 500, with no fail-over to the next account."""
    cut = HttpFault(status, body='{"code": 0, "msg": "', cut=True)
    fake_upstream.enqueue(cut, cut)
    answer = await post(proxy, "openai", stream=stream)
    assert answer.status == 502, answer.json()
    error = answer.json()["error"]
    assert error["code"] == "upstream_error"
    assert "failed on 2 accounts" in error["message"]
    assert (f"HTTP {status}" if status != 200 else "body broke") in error["message"]
    assert len({c.account for c in fake_upstream.calls_to("chat/completion")}) == 2
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_an_event_stream_type_in_capitals_is_a_stream(proxy, fake_upstream, stream):
    """Media types are case-insensitive (RFC 9110): 'Text/Event-Stream' was
    read whole as a JSON envelope, so a good answer was a 502."""
    fake_upstream.enqueue(Scripted(answer="streamed all the same", delivery=Delivery(
        content_type="Text/Event-Stream; Charset=UTF-8")))
    answer = await post(proxy, "openai", stream=stream)
    assert answer.status == 200, answer.text
    if stream:
        chunks = [json.loads(line[6:]) for line in answer.text.splitlines()
                  if line.startswith("data: {")]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    else:
        text = answer.json()["choices"][0]["message"]["content"]
    assert text == "streamed all the same"


@pytest.mark.parametrize("cap", [None, 2])
async def test_fail_over_stops_at_the_documented_attempt_cap(
        proxy_factory, fake_upstream, cap):
    upstream = {} if cap is None else {"max_attempts": cap}
    proxy = await proxy_with_accounts(proxy_factory, fake_upstream, 5, **upstream)
    fake_upstream.enqueue(*[DROPPED] * 5)
    answer = await post(proxy, "openai", stream=True)
    assert answer.status == 502
    expected = cap or 3  # the default of upstream.max_attempts
    assert len(fake_upstream.calls_to("chat/completion")) == expected
    assert f"failed on {expected} accounts" in answer.json()["error"]["message"]
    assert proxy.core.pool.inflight == 0


async def test_fewer_accounts_than_the_cap_end_with_the_last_failure(proxy, fake_upstream):
    # Two accounts, a cap of three: no third attempt and no 429 for lack of one.
    fake_upstream.enqueue(DROPPED, DROPPED)
    answer = await post(proxy, "openai", stream=True)
    assert answer.status == 502
    assert "failed on 2 accounts" in answer.json()["error"]["message"]
    assert "Retry-After" not in answer.headers
    assert len(fake_upstream.calls_to("chat/completion")) == 2


async def test_a_silent_upstream_is_bounded_by_one_deadline_not_per_account(
        proxy_factory, fake_upstream):
    # Each account stays silent past its 1 s silence timeout; the turn's
    # 1.5 s deadline ends the wait before a third account is even tried.
    proxy = await proxy_with_accounts(proxy_factory, fake_upstream, 3,
                                      silence_timeout_seconds=1,
                                      first_output_timeout_seconds=1.5)
    silent = Scripted(answer="late", delivery=Delivery(silence=4, comment_every=60))
    fake_upstream.enqueue(silent, silent, silent)
    answer = await post(proxy, "anthropic")
    assert answer.status == 504, answer.json()
    assert answer.json()["error"]["type"] == "timeout_error"
    assert "first_output_timeout_seconds" in answer.json()["error"]["message"]
    calls = fake_upstream.calls_to("chat/completion")
    assert len(calls) < 3
    assert proxy.core.pool.inflight == 0
    # The first account went silent for its whole silence timeout: cooled.
    # The second began late and was cut by the turn's deadline: not blamed.
    health = proxy.core.pool.health
    assert health.record(calls[0].account).kind == "upstream"
    if len(calls) == 2:
        assert health.state(calls[1].account) == "healthy"


async def test_an_account_silent_until_the_deadline_is_cooled_and_traffic_moves_on(
        proxy_factory, fake_upstream):
    # Equal timeouts (as by default): the silence timeout never fires before
    # the deadline, so the deadline is what finds the stalled account. The
    # only account holding a token used to win every lease and stall each.
    proxy = await proxy_with_accounts(proxy_factory, fake_upstream, 2,
                                      silence_timeout_seconds=1,
                                      first_output_timeout_seconds=1)
    stalled = ACCOUNTS[0][0]
    fake_upstream.misbehave(stalled, Misbehaviour(completion=Scripted(
        answer="late", delivery=Delivery(silence=4, comment_every=60))))
    assert (await post(proxy, "openai")).status == 504
    record = proxy.core.pool.health.record(stalled)
    assert record.state == "cooling_down" and record.kind == "upstream"
    assert "no output from the upstream" in record.reason
    for _ in range(2):
        answer = await post(proxy, "openai")
        assert answer.status == 200, answer.json()
    assert [c.account for c in fake_upstream.calls_to("chat/completion")] == [
        stalled, ACCOUNTS[1][0], ACCOUNTS[1][0]]
    assert proxy.core.pool.inflight == 0


async def test_a_comment_only_upstream_hits_the_deadline_too(proxy_factory, fake_upstream):
    # Keep-alive comments reset the silence timeout; the deadline still holds.
    proxy = await proxy_with_accounts(proxy_factory, fake_upstream, 2,
                                      first_output_timeout_seconds=1)
    chatty = Scripted(answer="late", delivery=Delivery(silence=6, comment_every=0.2))
    fake_upstream.enqueue(chatty, chatty)
    answer = await post(proxy, "gemini")
    assert answer.status == 504
    assert answer.json()["error"]["status"] == "DEADLINE_EXCEEDED"
    assert answer.json()["error"]["details"][0]["reason"] == "UPSTREAM_TIMEOUT"
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("where", ["code", "biz_code"])
async def test_outdated_client_version_at_the_completion_gets_the_hint(
        proxy, fake_upstream, where):
    fault = (EnvelopeFault(code=40005, msg="CLIENT_VERSION_TOO_LOW") if where == "code"
             else EnvelopeFault(code=0, msg="", biz_code=40005,
                                biz_msg="CLIENT_VERSION_TOO_LOW"))
    fake_upstream.enqueue(fault, fault)
    answer = await post(proxy, "openai")
    assert answer.status == 502
    assert "raise upstream.client_version" in answer.json()["error"]["message"]
    # Not an account fault: no fail-over onto the other account.
    assert len(fake_upstream.calls_to("chat/completion")) == 1
    assert proxy.core.pool.inflight == 0


def _disable(proxy: Proxy, account: str) -> None:
    proxy.core.pool.health.disable(account)


def _fail_login(proxy: Proxy, account: str) -> None:
    proxy.core.pool.health.login_failed(account, "PASSWORD_OR_USER_NAME_IS_WRONG")


@pytest.mark.parametrize("sideline", [_disable, _fail_login], ids=["disabled", "login-failing"])
@pytest.mark.parametrize("fault, status", [(HttpFault(502), 502), (HttpFault(429), 429)],
                         ids=["5xx", "429"])
async def test_a_fail_over_with_only_sidelined_accounts_left_reports_the_real_failure(
        proxy, fake_upstream, sideline, fault, status):
    # Bob is out of the rotation; Alice fails. The caller hears of Alice's
    # failure, not that "every account is disabled" (503) or failing to log in.
    sideline(proxy, ACCOUNTS[1][0])
    fake_upstream.enqueue(fault)
    answer = await post(proxy, "openai")
    assert answer.status == status, answer.json()
    assert answer.json()["error"]["code"] == ("upstream_error" if status == 502
                                              else "upstream_rate_limited")
    assert [c.account for c in fake_upstream.calls_to("chat/completion")] == [ACCOUNTS[0][0]]
    assert proxy.core.pool.inflight == 0


@pytest.mark.parametrize("family", list(CASES))
async def test_no_accounts_at_all_is_a_503_not_a_rate_limit(proxy_factory, family):
    proxy = await proxy_factory({"accounts": []})
    answer = await post(proxy, family)
    assert answer.status == 503 and "Retry-After" not in answer.headers
    assert "accounts are configured" in answer.json()["error"]["message"]
    assert proxy.fake.calls_to("chat/completion") == []


async def test_an_unknown_target_account_is_a_400_naming_the_header(proxy):
    path, body = CASES["openai"]
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + path, json=body, headers={
                **proxy.headers(), "X-Ds2-Target-Account": "nobody@example.com"}) as resp:
            assert resp.status == 400 and "Retry-After" not in resp.headers
            error = (await resp.json())["error"]
    assert "X-Ds2-Target-Account" in error["message"] and "is not configured" in error["message"]
    assert proxy.fake.calls_to("chat/completion") == []


HELD = {  # answers the client sees nothing of until they are whole
    "tool call": ({"tools": [{"type": "function", "function": {
        "name": "lookup", "parameters": {"type": "object",
                                         "properties": {"q": {"type": "string"}}}}}]},
                  dsml(("lookup", {"q": "x" * 120}))),
    "json": ({"response_format": {"type": "json_object"}}, '{"a": "' + "x" * 120 + '"}'),
}


def held_request(proxy: Proxy, kind: str, stream: bool) -> Awaitable[Reply]:
    extra, _ = HELD[kind]
    return raw_post(proxy.url + "/v1/chat/completions",
                    {"model": "deepseek-chat", "stream": stream, **extra,
                     "messages": [{"role": "user", "content": "hi"}]}, proxy.headers())


def held_answer(reply: Reply, stream: bool) -> str:
    """The tool call's arguments or the JSON text the client got."""
    if stream:
        chunks = [json.loads(line[6:]) for line in reply.text.split("\n")
                  if line.startswith("data: {")]
        deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
        return "".join(d.get("content") or "".join(
            call["function"].get("arguments") or "" for call in d.get("tool_calls") or [])
            for d in deltas)
    message = reply.json()["choices"][0]["message"]
    return message["content"] or message["tool_calls"][0]["function"]["arguments"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("kind", list(HELD))
async def test_an_answer_held_past_the_first_output_deadline_is_no_timeout(
        proxy_factory, fake_upstream, kind, stream):
    # The upstream answers at once, but the whole answer takes about 2 s to
    # stream and the client sees none of it before the end: the deadline
    # ended when the upstream was heard, not when the client saw something.
    # It was a 504 naming a silent upstream, and the account was cooled.
    proxy = await proxy_with_accounts(proxy_factory, fake_upstream, 2,
                                      first_output_timeout_seconds=1)
    fake_upstream.enqueue(Scripted(answer=HELD[kind][1], chunk_size=4,
                                   delivery=Delivery(chunk_delay=0.05)))
    reply = await held_request(proxy, kind, stream)
    assert reply.status == 200, reply.text
    assert "x" * 120 in held_answer(reply, stream)
    assert len(fake_upstream.calls_to("chat/completion")) == 1
    assert {proxy.core.pool.health.state(email) for email, _ in ACCOUNTS} == {"healthy"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_fail_over_after_the_upstream_was_heard_starts_a_fresh_deadline(
        proxy_factory, fake_upstream, stream):
    # The first account streams a held tool call past the deadline, then
    # drops it: nothing reached the client, so the turn moves on, and the
    # next account is not refused at once for the time the first one used.
    proxy = await proxy_with_accounts(proxy_factory, fake_upstream, 2,
                                      first_output_timeout_seconds=1)
    call = HELD["tool call"][1]
    fake_upstream.enqueue(Scripted(answer=call, chunk_size=4,
                                   delivery=Delivery(chunk_delay=0.05, drop_after=40)),
                          Scripted(answer=call))
    reply = await held_request(proxy, "tool call", stream)
    assert reply.status == 200, reply.text
    assert "x" * 120 in held_answer(reply, stream)
    assert [c.account for c in fake_upstream.calls_to("chat/completion")] == [
        email for email, _ in ACCOUNTS]
    assert proxy.core.pool.inflight == 0


async def test_a_fail_over_shapes_the_answer_with_the_settings_the_turn_began_with(
        proxy_factory, fake_upstream):
    # The prompt asked for calls in the tool markup (toolcall.mode
    # feature_match); the operator turns detection off while the first
    # account streams, and that account then drops. The next account's call
    # must still come back as a call, not as the raw markup the prompt asked for.
    proxy = await proxy_with_accounts(proxy_factory, fake_upstream, 2)
    call = HELD["tool call"][1]
    fake_upstream.enqueue(Scripted(answer=call, chunk_size=4,
                                   delivery=Delivery(chunk_delay=0.05, drop_after=20)),
                          Scripted(answer=call))
    reply = asyncio.ensure_future(held_request(proxy, "tool call", False))
    await wait_until(lambda: sum(fake_upstream.streaming.values()) == 1)
    await proxy.store.update(lambda doc: doc.setdefault("toolcall", {}).update(mode="off"))
    reply = await reply
    assert reply.status == 200, reply.text
    assert len(fake_upstream.calls_to("chat/completion")) == 2
    message = reply.json()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "lookup"
    assert "DSML" not in (message["content"] or "")
