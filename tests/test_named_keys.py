"""Named keys through the admin API and the official SDKs: bare keys migrate,
a created secret is shown once, and limits, expiry, disabling and model
allow-lists are enforced before any account, session or PoW is spent."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from google.genai import errors as genai_errors

from admin_util import Admin, admin_for
from clock_util import Clock
from conftest import Proxy
from test_dashboard_forms import Browserless
from ds2proxy.keyring import (LAST_MOMENT, KeyEntryError, identity_of, migrate_keys,
                              parse_keys)
from ds2proxy.limits import DAY
from ds2proxy.testing.clients import anthropic_client, gemini_client, openai_client

pytestmark = pytest.mark.timeout(60)


def upstream_spent(proxy: Proxy) -> int:
    return sum(len(proxy.fake.calls_to(e)) for e in
               ("users/login", "chat_session/create", "chat/create_pow_challenge",
                "chat/completion"))


async def new_key(admin: Admin, **fields: Any) -> dict[str, Any]:
    return await admin.ok("POST", "/admin/keys", json=fields)


async def ask(client: openai.AsyncOpenAI) -> Any:
    return await client.chat.completions.create(model="deepseek-chat",
                                                messages=[{"role": "user", "content": "hi"}])


@pytest.fixture
async def admin(proxy: Proxy):
    async with aiohttp.ClientSession() as http:
        yield await admin_for(proxy, http)


def test_migration_names_bare_keys_and_loses_nothing():
    doc = {"keys": ["sk-live-0123456789abcdef", {"key": "k2", "name": "key-cdef"}, "short"]}
    migrate_keys(doc, now=1000)
    secrets = [k["key"] for k in doc["keys"]]
    assert secrets == ["sk-live-0123456789abcdef", "k2", "short"]
    names = [k.name for k in parse_keys(doc["keys"])]
    assert names == ["key-cdef-2", "key-cdef", "key"] and doc["keys"][0]["created"] == 1000


def test_a_bare_keys_default_name_never_takes_a_later_entrys_own_name():
    """A config read as it is (no migration yet) named a bare key before
    reading the entries after it: one naming itself ``key-1234`` then
    clashed with the generated name and the whole config was refused."""
    keys = parse_keys(["sk-abcdefgh-1234", {"key": "sk-other-key-9999", "name": "key-1234"}])
    assert [k.name for k in keys] == ["key-1234-2", "key-1234"]
    with pytest.raises(KeyEntryError, match="duplicate key name"):
        parse_keys([{"key": "sk-a-000000001", "name": "team"},
                    {"key": "sk-b-000000002", "name": "team"}])


async def test_created_key_is_shown_once_then_only_its_preview(admin: Admin):
    made = await new_key(admin, name="team-a", note="the A team", limits={"rpm": 5})
    secret = made["key"]
    assert secret.startswith("sk-") and len(secret) > 30 and made["name"] == "team-a"
    listing = await admin.call("GET", "/admin/keys")
    assert secret not in listing.raw.decode() and secret[:4] in listing.raw.decode()
    [view] = [k for k in listing.json()["keys"] if k["name"] == "team-a"]
    assert view["limits"] == {"rpm": 5, "tokens_per_day": 0, "concurrent": 0}
    assert view["note"] == "the A team" and view["status"] == "active"
    # The old bare key was migrated in place by this write, secret kept.
    doc = json.loads(admin.proxy.config_path.read_text())
    assert doc["keys"][0]["key"] == admin.proxy.key and doc["keys"][0]["name"]
    reply = await openai_client(admin.proxy, key=admin.proxy.key).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    reply = await openai_client(admin.proxy, key=secret).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content


async def test_bad_key_fields_are_400_naming_the_field(admin: Admin):
    reply = await admin.call("POST", "/admin/keys", json={"name": "x", "limits": {"rpm": -1}})
    assert reply.status == 400 and "limits.rpm" in reply.json()["detail"]
    await new_key(admin, name="dup")
    reply = await admin.call("POST", "/admin/keys", json={"name": "dup"})
    assert reply.status == 400 and "duplicate key name" in reply.json()["detail"]


@pytest.mark.parametrize("chosen", ["sk-chosen\x00", "sk chosen key", "sk-a…3f", "sk-\u2028x",
                                    42])
async def test_a_chosen_secret_passes_the_key_check(admin: Admin, chosen: Any):
    """Only the older {"key"} form checked a given secret: a named key took
    one with a NUL or a space (it can never travel in a header) or a masked
    preview pasted back, and stored it."""
    before = admin.proxy.store.snapshot()
    reply = await admin.call("POST", "/admin/keys", json={"name": "chosen", "key": chosen})
    assert reply.status == 400 and reply.json()["field"] == "key"
    assert admin.proxy.store.snapshot() == before
    made = await new_key(admin, name="chosen", key="  sk-chosen-and-fine  ")
    assert made["key"] == "sk-chosen-and-fine"


async def test_rpm_limit_trips_with_retry_after_and_resets(admin: Admin):
    proxy = admin.proxy
    clock = Clock(time.time())
    proxy.core.limiter.clock = clock
    secret = (await new_key(admin, name="slow", limits={"rpm": 2}))["key"]
    client = openai_client(proxy, key=secret)
    for _ in range(2):
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "hi"}])
    spent = upstream_spent(proxy)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "hi"}])
    err = caught.value
    assert 1 <= int(err.response.headers["Retry-After"]) <= 60
    assert "'slow'" in err.message and "2 requests per minute" in err.message
    assert secret not in err.response.text
    assert err.body["code"] == "key_rate_limit" and err.body["request_id"]
    assert upstream_spent(proxy) == spent  # refused before any upstream call
    clock.now += 61
    reply = await client.chat.completions.create(model="deepseek-chat",
                                                 messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content


async def test_token_quota_trips_and_resets_at_utc_midnight(admin: Admin):
    proxy = admin.proxy
    clock = Clock(time.time())
    proxy.core.limiter.clock = clock
    secret = (await new_key(admin, name="metered", limits={"tokens_per_day": 5}))["key"]
    client = anthropic_client(proxy, "/anthropic", key=secret)
    first = await client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                         messages=[{"role": "user", "content": "hello there"}])
    assert first.usage.input_tokens + first.usage.output_tokens >= 5
    spent = upstream_spent(proxy)
    with pytest.raises(anthropic.RateLimitError) as caught:
        await client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                     messages=[{"role": "user", "content": "again"}])
    wait = int(caught.value.response.headers["Retry-After"])
    assert 1 <= wait <= DAY and "5 tokens for today" in caught.value.message
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert upstream_spent(proxy) == spent
    clock.now += wait
    again = await client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                         messages=[{"role": "user", "content": "again"}])
    assert again.content[0].text


async def test_expired_and_disabled_keys_are_401_by_name(admin: Admin):
    proxy = admin.proxy
    old = (await new_key(admin, name="old", expires=time.time() - 5))["key"]
    off = await new_key(admin, name="paused")
    await admin.ok("PATCH", f"/admin/keys/{off['id']}", json={"disabled": True})
    spent = upstream_spent(proxy)
    for secret, reason in ((old, "has expired"), (off["key"], "is disabled")):
        with pytest.raises(openai.AuthenticationError) as caught:
            await openai_client(proxy, key=secret).chat.completions.create(
                model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
        assert reason in caught.value.message and secret not in caught.value.response.text
    assert upstream_spent(proxy) == spent
    await admin.ok("PATCH", f"/admin/keys/{off['id']}", json={"disabled": False})
    reply = await openai_client(proxy, key=off["key"]).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content


async def test_disallowed_model_is_403_in_the_family_shape(admin: Admin):
    proxy = admin.proxy
    secret = (await new_key(admin, name="chat-only", models=["deepseek-chat", "gemini-2.*"]))["key"]
    spent = upstream_spent(proxy)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await openai_client(proxy, key=secret).chat.completions.create(
            model="deepseek-reasoner", messages=[{"role": "user", "content": "hi"}])
    assert "'chat-only' may not use model 'deepseek-reasoner'" in caught.value.message
    client = gemini_client(proxy, key=secret)
    with pytest.raises(genai_errors.ClientError) as denied:
        await client.aio.models.generate_content(model="gemini-1.5-pro", contents="hi")
    assert denied.value.code == 403
    assert upstream_spent(proxy) == spent
    ok = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert ok.text


async def test_count_routes_honour_the_model_list(admin: Admin):
    """count_tokens, countTokens and responses/input_tokens answered a key for
    any model, though its turns with that model are refused."""
    proxy = admin.proxy
    secret = (await new_key(admin, name="chat-only", models=["deepseek-chat", "gemini-2.*"]))["key"]
    claude = anthropic_client(proxy, "/anthropic", key=secret)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        await claude.messages.count_tokens(model="claude-opus-4-1",
                                           messages=[{"role": "user", "content": "hi"}])
    assert "'chat-only' may not use model 'claude-opus-4-1'" in caught.value.message
    with pytest.raises(genai_errors.ClientError) as denied:
        await gemini_client(proxy, key=secret).aio.models.count_tokens(
            model="gemini-1.5-pro", contents="hi")
    assert denied.value.code == 403
    openai_api = openai_client(proxy, key=secret)
    with pytest.raises(openai.PermissionDeniedError):
        await openai_api.responses.input_tokens.count(model="deepseek-reasoner", input="hi")
    counted = await openai_api.responses.input_tokens.count(model="deepseek-chat", input="hi")
    allowed = await gemini_client(proxy, key=secret).aio.models.count_tokens(
        model="gemini-2.5-flash", contents="hi")
    assert counted.input_tokens > 0 and allowed.total_tokens > 0


async def slot_taken(admin: Admin, name: str, rpm: int = 0
                     ) -> tuple[str, openai.AsyncOpenAI, Any]:
    """A key allowed one request at a time, its slot held by a slow stream
    (its first chunk read): the key's secret, a client with it, the stream."""
    from ds2proxy.testing import Delivery, Scripted
    secret = (await new_key(admin, name=name, limits={"concurrent": 1, "rpm": rpm}))["key"]
    admin.proxy.fake.enqueue(Scripted(answer="slow answer here", chunk_size=1,
                                      delivery=Delivery(chunk_delay=0.02)))
    client = openai_client(admin.proxy, key=secret)
    stream = await client.chat.completions.create(
        model="deepseek-chat", stream=True, messages=[{"role": "user", "content": "hi"}])
    assert await stream.__anext__() is not None
    return secret, client, stream


async def test_concurrency_limit_holds_a_slot_per_turn(admin: Admin):
    proxy = admin.proxy
    secret, client, stream = await slot_taken(admin, "one-at-a-time")
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "hi"}])
    assert "concurrency limit" in caught.value.message
    async for _ in stream:
        pass
    assert proxy.core.limiter.active(identity_of(secret)) == 0


async def test_a_request_refused_for_concurrency_spends_none_of_the_keys_rpm(admin: Admin):
    """``rpm: 2, concurrent: 1`` without a shared store: the rpm was counted
    when the request was authenticated, so requests refused because the one
    slot was busy used up the minute and the key's second turn was refused
    too. Now the window and the slot are one step: refused, neither is spent."""
    proxy = admin.proxy
    secret, client, stream = await slot_taken(admin, "two-a-minute", rpm=2)
    for _ in range(3):
        with pytest.raises(openai.RateLimitError) as caught:
            await ask(client)
        assert caught.value.body["code"] == "key_concurrency_limit"
    assert proxy.core.limiter.requests_last_minute(identity_of(secret)) == 1
    async for _ in stream:
        pass
    assert (await ask(client)).choices[0].message.content
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(client)
    assert caught.value.body["code"] == "key_rate_limit"
    assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 60
    assert proxy.core.limiter.active(identity_of(secret)) == 0


async def test_embeddings_take_a_concurrent_slot_like_a_turn(admin: Admin):
    """A key limited to one request at a time ran embeddings beside its turn
    (OpenAI and Ollama alike): those routes run no turn, so never took a slot."""
    proxy = admin.proxy
    secret, client, stream = await slot_taken(admin, "one-slot")
    with pytest.raises(openai.RateLimitError) as caught:
        await client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert "concurrency limit" in caught.value.message
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/api/embed", json={"model": "nomic", "input": "x"},
                             headers={"Authorization": f"Bearer {secret}"}) as resp:
            assert resp.status == 429 and "concurrency limit" in (await resp.json())["error"]
    async for _ in stream:
        pass
    reply = await client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert len(reply.data) == 1
    assert proxy.core.limiter.active(identity_of(secret)) == 0


async def test_embeddings_honour_the_model_list_and_are_recorded(admin: Admin):
    proxy = admin.proxy
    secret = (await new_key(admin, name="embedder", models=["text-embedding-*"]))["key"]
    client = openai_client(proxy, key=secret)
    with pytest.raises(openai.PermissionDeniedError):
        await client.embeddings.create(model="other-model", input="hello")
    reply = await client.embeddings.create(model="text-embedding-3-small", input="hello world")
    [row] = (await admin.ok("GET", "/admin/usage/requests?key_name=embedder&status=200")
             )["requests"]
    assert row["model"] == "text-embedding-3-small"
    assert row["prompt_tokens"] == reply.usage.prompt_tokens > 0


async def test_no_key_may_be_named_like_the_pass_through_callers(admin: Admin):
    """Callers with their own DeepSeek token are logged and counted as
    ``pass-through``: a key of that name would be charged for their tokens."""
    refused = await admin.call("POST", "/admin/keys", json={"name": "pass-through",
                                                             "limits": {"tokens_per_day": 50}})
    assert refused.status == 400 and refused.json()["field"] == "name"
    made = await new_key(admin, name="team-b")
    renamed = await admin.call("PATCH", f"/admin/keys/{made['id']}", json={"name": "pass-through"})
    assert renamed.status == 400 and "pass-through" in renamed.json()["detail"]
    with pytest.raises(KeyEntryError) as info:
        parse_keys([{"key": "sk-some-secret-1234", "name": "pass-through"}])
    assert info.value.where == "keys[0].name"


async def test_a_request_refused_at_the_door_is_logged_under_its_key(admin: Admin):
    """A request refused for its key's rate, or for a disabled key, was logged
    with no key name (the refusal came before the name was noted): the key's
    request log, error totals and metrics never showed its 429s and 401s."""
    proxy = admin.proxy
    limited = (await new_key(admin, name="limited", limits={"rpm": 1}))["key"]
    client = anthropic_client(proxy, "/anthropic", key=limited)
    await client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                 messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                     messages=[{"role": "user", "content": "hi"}])
    paused = await new_key(admin, name="paused")
    await admin.ok("PATCH", f"/admin/keys/{paused['id']}", json={"disabled": True})
    with pytest.raises(openai.AuthenticationError):
        await openai_client(proxy, key=paused["key"]).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
    log = (await admin.ok("GET", "/admin/usage/requests?errors=1"))["requests"]
    assert [(r["key_name"], r["status"], r["error_code"]) for r in log] == [
        ("paused", 401, "key_disabled"), ("limited", 429, "key_rate_limit")]
    totals = (await admin.ok("GET", "/admin/usage?window=hour"))["totals"]["key_name"]
    assert {r["name"]: r["errors"] for r in totals}["limited"] == 1
    metrics = (await admin.call("GET", "/metrics")).raw.decode()
    assert 'family="claude",key="limited",model="",status="429"' in metrics


async def test_retry_after_is_honest_when_the_rate_limit_is_lowered(admin: Admin):
    """With more requests in the window than a lowered limit allows, Retry-After
    named the oldest one's leaving: a client that waited that long was refused
    again, once per request still in the window."""
    proxy = admin.proxy
    clock = Clock(time.time())
    proxy.core.limiter.clock = clock
    made = await new_key(admin, name="lowered", limits={"rpm": 10})
    client = openai_client(proxy, key=made["key"])
    for _ in range(6):
        await ask(client)
        clock.now += 5
    await admin.ok("PATCH", f"/admin/keys/{made['id']}", json={"limits": {"rpm": 2}})
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(client)
    wait = int(caught.value.response.headers["Retry-After"])
    assert wait == 60 - 5 * 2  # when the fifth of six leaves, two are left
    clock.now += wait - 1
    with pytest.raises(openai.RateLimitError):
        await ask(client)
    clock.now += 1
    assert (await ask(client)).choices[0].message.content


async def test_an_expiry_in_milliseconds_is_refused_naming_the_field(admin: Admin):
    """An expiry in milliseconds (JavaScript's Date.now()) was taken as seconds:
    the key meant to expire next month stayed valid for some 50,000 years,
    and its dashboard page was a 500 (no date reaches that year)."""
    in_a_month_ms = round((time.time() + 30 * DAY) * 1000)
    before = admin.proxy.store.snapshot()
    reply = await admin.call("POST", "/admin/keys", json={"name": "ms", "expires": in_a_month_ms})
    assert reply.status == 400 and reply.json()["field"] == "expires"
    assert "milliseconds" in reply.json()["detail"]
    assert admin.proxy.store.snapshot() == before
    with pytest.raises(KeyEntryError) as info:
        parse_keys([{"key": "sk-some-secret-1234", "name": "n", "created": in_a_month_ms}])
    assert info.value.where == "keys[0].created"
    made = await new_key(admin, name="far", expires=LAST_MOMENT)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        browser = Browserless(admin.proxy, http)
        await browser.log_in()
        status, page, _ = await browser.get(f"/admin/ui/keys/{made['id']}")
    assert status == 200 and "expires 9999-12-31 23:59:59 UTC" in page


async def test_a_renamed_key_keeps_its_counts_and_a_reused_name_starts_afresh(admin: Admin):
    """Limits were counted under the key's name: renaming a key gave it a fresh
    minute and day (a key at its quota renamed was served again), and a new
    key given a deleted key's name inherited that key's counts."""
    proxy = admin.proxy
    clock = Clock(time.time())
    proxy.core.limiter.clock = clock
    made = await new_key(admin, name="team", limits={"rpm": 1, "tokens_per_day": 5})
    client = openai_client(proxy, key=made["key"])
    await ask(client)
    await admin.ok("PATCH", f"/admin/keys/{made['id']}", json={"name": "team-renamed"})
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(client)
    assert caught.value.body["code"] == "key_rate_limit"
    assert "'team-renamed'" in caught.value.message
    clock.now += 61
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(client)
    assert caught.value.body["code"] == "key_token_quota"
    [view] = [k for k in (await admin.ok("GET", "/admin/keys"))["keys"]
              if k["name"] == "team-renamed"]
    assert view["usage"]["tokens_per_day"]["used"] >= 5
    await admin.ok("DELETE", f"/admin/keys/{made['id']}")
    fresh = await new_key(admin, name="team-renamed", limits={"rpm": 1, "tokens_per_day": 5})
    assert (await ask(openai_client(proxy, key=fresh["key"]))).choices[0].message.content


async def test_patching_one_limit_keeps_the_others(admin: Admin):
    """PATCH {"limits": {"concurrent": 2}} replaced the whole limits object:
    the key's daily quota and rate limit were silently lifted."""
    made = await new_key(admin, name="capped", limits={"rpm": 5, "tokens_per_day": 1000})
    edited = await admin.ok("PATCH", f"/admin/keys/{made['id']}",
                            json={"limits": {"concurrent": 2}})
    assert edited["key"]["limits"] == {"rpm": 5, "tokens_per_day": 1000, "concurrent": 2}
    edited = await admin.ok("PATCH", f"/admin/keys/{made['id']}",
                            json={"limits": {"rpm": None, "tokens_per_day": 500}})
    assert edited["key"]["limits"] == {"rpm": 0, "tokens_per_day": 500, "concurrent": 2}
    [stored] = [k for k in admin.proxy.core.config.keys if k.name == "capped"]
    assert (stored.limits.tokens_per_day, stored.limits.concurrent) == (500, 2)
    bad = await admin.call("PATCH", f"/admin/keys/{made['id']}", json={"limits": {"rpm": -1}})
    assert bad.status == 400 and bad.json()["field"] == "limits.rpm"
