"""Usage accounting through the official SDKs: one row per request with the
tokens the client received, rollups that add up and survive a restart, a
disconnect mid-stream recorded once, request ids end to end, /metrics."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import anthropic
import ollama
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from admin_util import Admin, admin_for, wait_until
from test_state_instances import within
from conftest import Proxy
from provider_util import PROVIDER_MODEL, fake_provider, provider_config  # noqa: F401
from token_util import reference_tokens
from ds2proxy.app import create_app, start_server
from ds2proxy.config_store import ConfigStore
from ds2proxy.keyring import identity_of
from ds2proxy.logfmt import JSONFormatter
from ds2proxy.testing import Delivery, Scripted
from ds2proxy.testing.provider_replies import ProviderReply
from ds2proxy.testing.clients import anthropic_client, gemini_client, ollama_client, openai_client
from ds2proxy.tokens import count_tokens

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def admin(proxy: Proxy):
    async with aiohttp.ClientSession() as http:
        yield await admin_for(proxy, http)


async def detail(admin: Admin, row: dict) -> dict:
    """One row of the request log with everything kept (its body too)."""
    return (await admin.ok("GET", f"/admin/usage/requests/{row['id']}"))["request"]


async def rows(admin: Admin, **query: str) -> list[dict]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return (await admin.ok("GET", f"/admin/usage/requests?per_page=500&{qs}"))["requests"]


async def send_mix(proxy: Proxy) -> list[tuple[str, bool, int, int]]:
    """Requests of three families, stream and not: (family, stream, prompt, completion)."""
    sent = []
    client = openai_client(proxy)
    reply = await client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "one"}])
    sent.append(("openai", False, reply.usage.prompt_tokens, reply.usage.completion_tokens))
    stream = await client.chat.completions.create(
        model="deepseek-chat", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "two"}])
    usage = [c.usage async for c in stream if c.usage][-1]
    sent.append(("openai", True, usage.prompt_tokens, usage.completion_tokens))
    claude = anthropic_client(proxy, "/anthropic")
    msg = await claude.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                       messages=[{"role": "user", "content": "three"}])
    sent.append(("claude", False, msg.usage.input_tokens, msg.usage.output_tokens))
    gem = gemini_client(proxy)
    out = await gem.aio.models.generate_content(model="gemini-2.5-flash", contents="four")
    meta = out.usage_metadata
    sent.append(("gemini", False, meta.prompt_token_count, meta.candidates_token_count))
    return sent


async def test_every_request_is_one_row_with_the_tokens_the_client_saw(admin: Admin):
    proxy = admin.proxy
    sent = await send_mix(proxy)
    got = list(reversed(await rows(admin)))
    assert [(r["family"], bool(r["stream"]), r["prompt_tokens"], r["completion_tokens"])
            for r in got] == sent
    for r in got:
        assert r["status"] == 200 and r["key_name"] == "key" and r["account"].endswith(
            "@example.com") and r["latency_ms"] >= r["ttfb_ms"] > 0 and r["request_id"]
    assert got[0]["model"] == "deepseek-chat" and got[0]["native_model"] == "deepseek-chat"
    assert got[2]["model"] == "claude-sonnet-4-5"
    summary = await admin.ok("GET", "/admin/usage?window=hour")
    [key] = summary["totals"]["key_name"]
    assert key["requests"] == 4 and key["errors"] == 0
    assert key["prompt_tokens"] == sum(s[2] for s in sent)
    assert key["completion_tokens"] == sum(s[3] for s in sent)
    assert sum(b["requests"] for b in summary["series"]) == 4
    families = {t["name"]: t["requests"] for t in summary["totals"]["family"]}
    assert families == {"openai": 2, "claude": 1, "gemini": 1}
    elsewhere = await admin.ok("GET", "/admin/usage?window=hour&key_name=no-such-key")
    assert elsewhere["series"] == [] and all(t == [] for t in elsewhere["totals"].values())


async def test_failures_are_recorded_with_their_code(admin: Admin):
    proxy = admin.proxy
    with pytest.raises(openai.BadRequestError):
        await openai_client(proxy).chat.completions.create(model="no-such-model", messages=[
            {"role": "user", "content": "x"}])
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", json={}) as resp:
            assert resp.status == 401
    got = await rows(admin, errors="1")
    assert [(r["status"], r["error_code"]) for r in got] == [
        (401, "invalid_api_key"), (400, "model_not_found")]
    assert got[0]["key_name"] == ""


async def test_a_disconnect_mid_stream_is_recorded_once(admin: Admin):
    proxy = admin.proxy
    proxy.fake.enqueue(Scripted(answer="x" * 400, chunk_size=1,
                                delivery=Delivery(chunk_delay=0.01)))
    before = proxy.core.usage.recorded
    async with aiohttp.ClientSession() as http:
        resp = await http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                               json={"model": "deepseek-chat", "stream": True,
                                     "messages": [{"role": "user", "content": "long"}]})
        await resp.content.readline()
        resp.close()
    await wait_until(lambda: proxy.core.usage.recorded == before + 1)
    await wait_until(lambda: proxy.core.pool.inflight == 0)
    [row] = await rows(admin)
    assert row["status"] == 499 and row["stream"] == 1
    assert proxy.core.usage.recorded == before + 1


def sent_prompt_tokens(proxy: Proxy) -> int:
    return reference_tokens(proxy.fake.calls_to("chat/completion")[-1].body["prompt"])


async def test_a_client_leaving_mid_stream_is_charged_what_was_produced(admin: Admin):
    """Leaving before the usage chunk must not make the answer free: the row,
    the key's daily total and the metrics carry the prompt and the tokens
    of the answer produced by then (at least what the client read)."""
    proxy = admin.proxy
    answer = "word " * 400
    proxy.fake.enqueue(Scripted(answer=answer, chunk_size=5,
                                delivery=Delivery(chunk_delay=0.005)))
    before = proxy.core.usage.recorded
    stream = await openai_client(proxy).chat.completions.create(
        model="deepseek-chat", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "long"}])
    received = ""
    async for chunk in stream:
        received += chunk.choices[0].delta.content or ""
        if len(received) >= 100:
            break
    await stream.close()
    await wait_until(lambda: proxy.core.usage.recorded == before + 1)
    await wait_until(lambda: proxy.core.pool.inflight == 0)
    [row] = await rows(admin)
    assert row["status"] == 499
    assert row["prompt_tokens"] == sent_prompt_tokens(proxy)
    assert reference_tokens(received) <= row["completion_tokens"] <= reference_tokens(answer)
    used = proxy.core.limiter.tokens_today(identity_of(proxy.key))
    assert used == row["prompt_tokens"] + row["completion_tokens"]


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_drop_after_output_records_the_answer_so_far(admin: Admin, stream):
    proxy = admin.proxy
    proxy.fake.enqueue(Scripted(answer="word " * 100, chunk_size=5,
                                delivery=Delivery(drop_after=12)))
    client = openai_client(proxy)
    received = ""
    with pytest.raises(openai.APIError):
        if not stream:
            await client.chat.completions.create(model="deepseek-chat", messages=[
                {"role": "user", "content": "hi"}])
        async for chunk in await client.chat.completions.create(
                model="deepseek-chat", stream=True, stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "hi"}]):
            received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    await wait_until(lambda: proxy.core.usage.recorded == 1)
    [row] = await rows(admin)
    assert row["error_code"] == "upstream_error" and row["prompt_tokens"] == sent_prompt_tokens(proxy)
    assert row["completion_tokens"] > 0
    if stream:  # every token read was sent on: the client saw exactly what is charged
        assert row["completion_tokens"] == reference_tokens(received)


async def test_a_failure_before_any_output_records_no_tokens(admin: Admin):
    proxy = admin.proxy
    proxy.fake.enqueue(*[Scripted(answer="never seen", delivery=Delivery(drop_after=0))]
                       * len(proxy.core.pool.accounts()))
    with pytest.raises(openai.APIStatusError):
        await openai_client(proxy).chat.completions.create(
            model="deepseek-chat", stream=True, messages=[{"role": "user", "content": "hi"}])
    await wait_until(lambda: proxy.core.usage.recorded == 1)
    [row] = await rows(admin)
    assert row["status"] == 502 and (row["prompt_tokens"], row["completion_tokens"]) == (0, 0)
    assert proxy.core.limiter.tokens_today(identity_of(proxy.key)) == 0


async def test_restart_keeps_the_aggregates(proxy_factory):
    first = await proxy_factory({"usage": {"db_path": "shared-usage.db"}})
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(first, http)
        sent = await send_mix(first)
        before = await admin.ok("GET", "/admin/usage?window=day")
    await first.server.close()
    store = ConfigStore.from_sources(str(first.config_path), {})
    server = await start_server(create_app(store, admin_key=first.admin_key))
    try:
        again = type(first)(server.url, first.key, first.admin_key, first.fake, server.runner.app,
                            store, first.config_path, server)
        async with aiohttp.ClientSession() as http:
            admin = await admin_for(again, http)
            after = await admin.ok("GET", "/admin/usage?window=day")
            assert after["totals"] == before["totals"]
            assert after["totals"]["key_name"][0]["requests"] == len(sent)
            # Today's token use per key is read back, so daily quotas survive too.
            assert again.core.limiter.tokens_today(identity_of(again.key)) == sum(
                s[2] + s[3] for s in sent)
            assert len(await rows(admin)) == len(sent)
    finally:
        await server.close()


async def test_request_ids_are_echoed_validated_and_logged(admin: Admin):
    proxy = admin.proxy
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(
                **{"X-Request-Id": "client-abc.123"}), json={"model": "nope"}) as resp:
            assert resp.headers["X-Request-Id"] == "client-abc.123"
            assert (await resp.json())["error"]["request_id"] == "client-abc.123"
        async with http.get(proxy.url + "/healthz", headers={
                "X-Request-Id": "bad id <script>" + "x" * 200}) as resp:
            assert resp.headers["X-Request-Id"].startswith("req_")
    [row] = await rows(admin, request_id="client-abc.123")
    assert row["status"] == 400


async def test_json_log_has_one_object_per_request_without_secrets(admin: Admin, caplog):
    caplog.set_level(logging.INFO, logger="ds2proxy.requests")
    await openai_client(admin.proxy).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "log me"}])
    [record] = [r for r in caplog.records if r.name == "ds2proxy.requests"]
    line = JSONFormatter().format(record)
    entry = json.loads(line)
    assert entry["event"] == "request" and entry["status"] == 200
    assert entry["key_name"] == "key" and entry["family"] == "openai"
    assert entry["prompt_tokens"] > 0 and entry["request_id"].startswith("req_")
    assert admin.proxy.key not in line
    assert "POST /v1/chat/completions 200" in record.getMessage()


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name
               and all(dict(ls).get(k) == w for k, w in labels.items()))


async def test_metrics_counters_move_by_exactly_the_requests_sent(proxy_factory):
    proxy = await proxy_factory({"metrics": {"token": "scrape-token-123"}})
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/metrics") as resp:
            assert resp.status == 401
        headers = {"Authorization": "Bearer scrape-token-123"}
        async with http.get(proxy.url + "/metrics", headers=headers) as resp:
            before = scrape(await resp.text())
        sent = await send_mix(proxy)
        with pytest.raises(openai.BadRequestError):
            await openai_client(proxy).chat.completions.create(model="x" * 50, messages=[
                {"role": "user", "content": "x"}])
        async with http.get(proxy.url + "/metrics", headers=headers) as resp:
            after = scrape(await resp.text())
    moved = lambda name, **l: total(after, name, **l) - total(before, name, **l)  # noqa: E731
    assert moved("ds2proxy_requests_total") == len(sent) + 1
    assert moved("ds2proxy_requests_total", family="openai", status="200") == 2
    assert moved("ds2proxy_requests_total", family="openai", status="400", model="other") == 1
    assert moved("ds2proxy_request_seconds_count") == len(sent) + 1
    assert moved("ds2proxy_tokens_total", kind="prompt") == sum(s[2] for s in sent)
    assert moved("ds2proxy_upstream_calls_total", endpoint="/api/v0/chat/completion",
                 outcome="ok") == len(sent)
    assert moved("ds2proxy_pow_solve_seconds_count") == len(sent)
    assert ("ds2proxy_pool_inflight", ()) in after
    assert not any("x" * 50 in str(k) for k in after)
    accounts = len(proxy.core.pool.accounts())
    assert total(after, "ds2proxy_pool_accounts", state="healthy") == accounts


async def test_the_accounts_gauge_follows_account_health(proxy: Proxy):
    headers = {"Authorization": f"Bearer {proxy.admin_key}"}
    first = proxy.core.pool.accounts()[0].identifier
    proxy.core.pool.health.disable(first)
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/metrics", headers=headers) as resp:
            samples = scrape(await resp.text())
    accounts = len(proxy.core.pool.accounts())
    assert total(samples, "ds2proxy_pool_accounts", state="disabled") == 1
    assert total(samples, "ds2proxy_pool_accounts", state="healthy") == accounts - 1


async def test_metrics_are_closed_to_other_sites_and_keys(proxy: Proxy):
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/metrics", headers={
                "Authorization": f"Bearer {proxy.key}"}) as resp:
            assert resp.status == 401  # an API key is not an admin key
        async with http.get(proxy.url + "/metrics", headers={
                "Authorization": f"Bearer {proxy.admin_key}", "Origin": "http://evil.example",
                "Sec-Fetch-Site": "cross-site"}) as resp:
            assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
        async with http.get(proxy.url + "/metrics", headers={
                "Authorization": f"Bearer {proxy.admin_key}"}) as resp:
            assert resp.status == 200 and "ds2proxy_requests" in await resp.text()


async def test_the_request_log_pages_and_filters(admin: Admin):
    client = openai_client(admin.proxy)
    for word in ("a", "b", "c"):
        await client.chat.completions.create(model="deepseek-chat", messages=[
            {"role": "user", "content": word}])
    first = await admin.ok("GET", "/admin/usage/requests?per_page=2")
    second = await admin.ok("GET", "/admin/usage/requests?per_page=2&page=2")
    assert first["total"] == second["total"] == 3
    ids = [r["id"] for r in first["requests"] + second["requests"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 3
    detail = await admin.ok("GET", f"/admin/usage/requests/{ids[0]}")
    assert detail["request"]["request_id"] == first["requests"][0]["request_id"]
    none = await admin.ok("GET", "/admin/usage/requests?family=claude")
    assert none["total"] == 0
    bad = await admin.call("GET", "/admin/usage/requests?status=abc")
    assert bad.status == 400


async def test_metrics_can_be_turned_off(proxy_factory):
    proxy = await proxy_factory({"metrics": {"enabled": False}})
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.url + "/metrics", headers={
                "Authorization": f"Bearer {proxy.admin_key}"}) as resp:
            assert resp.status == 404


async def test_bodies_are_kept_only_with_log_bodies_cut_and_redacted(proxy_factory):
    proxy = await proxy_factory({"usage": {"log_bodies": True, "log_body_max_bytes": 300}})
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        async with http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(), json={
                "model": "deepseek-chat", "api_key": "sk-should-not-be-kept",
                "messages": [{"role": "user", "content": "y" * 1000}]}) as resp:
            assert resp.status == 200
        [listed] = await rows(admin)
        row = await detail(admin, listed)
    assert "request_body" not in listed
    assert "deepseek-chat" in row["request_body"] and len(row["request_body"]) <= 300
    assert "sk-should-not-be-kept" not in row["request_body"]


async def test_kept_bodies_mask_credentials_a_client_forwards_in_headers(proxy_factory):
    """A Responses MCP tool carries its server's headers in the body: an
    X-Api-Key or Cookie there was kept verbatim (only Authorization was masked)."""
    proxy = await proxy_factory({"usage": {"log_bodies": True}})
    secrets = ("mcp-api-key-1a2b", "mcp-cookie-3c4d", "client-secret-5e6f", "goog-key-7a8b")
    tool = {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example/sse",
            "require_approval": "never",
            "headers": {"X-Api-Key": secrets[0], "Cookie": f"session={secrets[1]}",
                        "x-goog-api-key": secrets[3]}}
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        async with http.post(proxy.url + "/v1/responses", headers=proxy.headers(), json={
                "model": "deepseek-chat", "input": "hi", "tools": [tool],
                "metadata": {"client_secret": secrets[2]}}) as resp:
            await resp.read()
        [row] = await rows(admin)
        row = await detail(admin, row)
    assert "mcp.example" in row["request_body"]
    assert not [s for s in secrets if s in row["request_body"]]


@pytest.mark.parametrize("usage", [(-7, 5), (10**30, 1), (True, 3), (1.5, 2)])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_provider_usage_that_is_no_count_is_replaced_by_ours(
        proxy_factory, fake_provider, usage, stream):  # noqa: F811
    """A negative count made the metrics counter raise (a bare 500); a huge
    one could not be serialised (500) and ended the usage store's writer."""
    proxy = await proxy_factory(provider_config(fake_provider))
    fake_provider.enqueue(ProviderReply(text="fine answer", usage=usage))
    body: dict = {"model": PROVIDER_MODEL, "stream": stream,
                  "messages": [{"role": "user", "content": "x"}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(),
                             json=body) as resp:
            assert resp.status == 200
            text = await resp.text()
        async with http.get(proxy.url + "/metrics", headers={
                "Authorization": f"Bearer {proxy.admin_key}"}) as resp:
            samples = scrape(await resp.text())
    assert "fine" in text
    shown = json.loads(text)["usage"] if not stream else [
        json.loads(line[6:]) for line in text.splitlines()
        if line.startswith("data: {")][-1]["usage"]
    assert 0 <= shown["prompt_tokens"] < 1000 and 0 < shown["completion_tokens"] < 1000
    assert total(samples, "ds2proxy_tokens_total", kind="prompt") == shown["prompt_tokens"]
    assert total(samples, "ds2proxy_requests_total", status="200") == 1
    store = proxy.core.usage.store
    await asyncio.wait_for(store.flush(), 10)
    [row] = (await store.requests({}, 10, 0))[0]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        shown["prompt_tokens"], shown["completion_tokens"])
    assert proxy.core.providers.health.seconds_left("prov") == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_a_routed_model_name_with_a_line_break_still_gets_its_answer(
        proxy_factory, fake_provider, stream):  # noqa: F811
    """X-DS2Proxy-Served-By names the provider and the model the client asked
    for (a glob route takes any name): a CR/LF there made aiohttp refuse the
    headers, so the client got a dropped connection instead of its answer."""
    proxy = await proxy_factory(provider_config(fake_provider))
    model = "qwen-a\r\nX-Evil: 1"
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/v1/chat/completions", headers=proxy.headers(), json={
                "model": model, "stream": stream,
                "messages": [{"role": "user", "content": "x"}]}) as resp:
            assert resp.status == 200 and "X-Evil" not in resp.headers
            assert resp.headers["X-DS2Proxy-Served-By"] == "prov:qwen-a%0D%0AX-Evil: 1"
            await resp.read()
    store = proxy.core.usage.store
    await asyncio.wait_for(store.flush(), 10)
    [row] = (await store.requests({}, 10, 0))[0]
    assert row["status"] == 200 and row["served_by"] == f"prov:{model}"


async def test_bodies_are_not_kept_by_default(admin: Admin):
    await openai_client(admin.proxy).chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "private words"}])
    [row] = await rows(admin)
    assert (await detail(admin, row))["request_body"] == "" and row["prompt_tokens"] > 0


async def test_a_failure_after_the_stream_began_is_recorded_with_its_code(admin: Admin):
    proxy = admin.proxy
    proxy.fake.enqueue(Scripted(answer="word " * 100, delivery=Delivery(drop_after=12)))
    async with aiohttp.ClientSession() as http:
        async with http.post(proxy.url + "/anthropic/v1/messages", headers=proxy.headers(),
                             json={"model": "claude-sonnet-4-5", "max_tokens": 100,
                                   "stream": True,
                                   "messages": [{"role": "user", "content": "hi"}]}) as resp:
            raw = await resp.read()
    assert b"event: error" in raw
    [row] = await rows(admin)
    assert row["status"] == 200 and row["error_code"] == "upstream_error"
    assert row["stream"] == 1 and row["family"] == "claude"
    failures = await admin.ok("GET", "/admin/usage/requests?errors=1")
    assert failures["total"] == 1


def test_json_lines_mask_credentials_in_any_record():
    record = logging.LogRecord("aiohttp.client", logging.WARNING, __file__, 1,
                               "retrying with Authorization: Bearer sk-secret-123 %s",
                               ("api_key=sk-other-456",), None)
    line = JSONFormatter().format(record)
    entry = json.loads(line)
    assert "sk-secret-123" not in line and "sk-other-456" not in line
    assert entry["level"] == "WARNING" and entry["logger"] == "aiohttp.client"


@pytest.mark.parametrize("answer", ["ab" * 6000, "a short answer, counted at once"])
async def test_usage_counted_after_the_stream_ended_is_exact(admin: Admin, answer: str):
    """Without include_usage the stream ends before usage is counted (a long
    word, 12,000 characters with no safe boundary, is counted in a thread):
    the record still carries the exact count the client would have been sent."""
    proxy = admin.proxy
    client = openai_client(proxy)
    counts = []
    for include in (True, False):
        proxy.fake.enqueue(Scripted(answer=answer, chunk_size=3, tip=False))
        before = proxy.core.usage.recorded
        stream = await client.chat.completions.create(
            model="deepseek-chat", stream=True, messages=[{"role": "user", "content": "w"}],
            **({"stream_options": {"include_usage": True}} if include else {}))
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer
        sent = [c.usage for c in chunks if c.usage]
        assert len(sent) == (1 if include else 0)
        await wait_until(lambda: proxy.core.usage.recorded == before + 1)
        row = (await rows(admin))[0]  # the newest
        counts.append((row["prompt_tokens"], row["completion_tokens"]))
        if include:
            assert counts[0] == (sent[0].prompt_tokens, sent[0].completion_tokens)
    assert counts[1] == counts[0]
    assert counts[0][1] == count_tokens(answer)


async def test_a_provider_answer_cut_short_is_charged_what_was_produced(proxy_factory,
                                                                         fake_provider):
    """The provider's own usage comes last; an answer that ends before it (the
    client left, the provider dropped) is counted here, never left at zero."""
    proxy = await proxy_factory(provider_config(fake_provider))
    answer = "word " * 300
    fake_provider.enqueue(ProviderReply(text=answer, chunk_chars=5, chunk_delay=0.005),
                          ProviderReply(text=answer, chunk_chars=5, drop_after_chunks=10))
    stream = await openai_client(proxy).chat.completions.create(
        model=PROVIDER_MODEL, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "long"}])
    received = ""
    async for chunk in stream:
        received += chunk.choices[0].delta.content or "" if chunk.choices else ""
        if len(received) >= 50:
            break
    await stream.close()
    await wait_until(lambda: proxy.core.usage.recorded == 1)
    dropped = ""
    with pytest.raises(openai.APIError):
        async for chunk in await openai_client(proxy).chat.completions.create(
                model=PROVIDER_MODEL, stream=True, messages=[{"role": "user", "content": "long"}]):
            dropped += chunk.choices[0].delta.content or "" if chunk.choices else ""
    await wait_until(lambda: proxy.core.usage.recorded == 2)
    await proxy.core.usage.store.flush()
    (drop, gone), _ = await proxy.core.usage.store.requests({}, 10, 0)
    assert gone["status"] == 499 and gone["prompt_tokens"] == reference_tokens("long")
    assert reference_tokens(received) <= gone["completion_tokens"] <= reference_tokens(answer)
    assert drop["error_code"] == "upstream_error"
    assert drop["completion_tokens"] == reference_tokens(dropped) > 0
    assert proxy.core.limiter.tokens_today(identity_of(proxy.key)) == sum(
        r["prompt_tokens"] + r["completion_tokens"] for r in (gone, drop))


async def test_ollama_embeddings_are_recorded_and_held_to_the_key(admin: Admin):
    """/api/embed and /api/embeddings spend a key like /v1/embeddings: its
    model list and daily tokens are checked, and their tokens recorded."""
    proxy = admin.proxy
    narrow = await admin.ok("POST", "/admin/keys", json={"name": "chat-only",
                                                          "models": ["deepseek-*"]})
    with pytest.raises(ollama.ResponseError) as info:
        await ollama_client(proxy, {"Authorization": f"Bearer {narrow['key']}"}).embed(
            model="bge-m3", input="one")
    assert info.value.status_code == 403 and "may not use model 'bge-m3'" in info.value.error
    metered = await admin.ok("POST", "/admin/keys", json={"name": "metered",
                                                           "limits": {"tokens_per_day": 5}})
    client = ollama_client(proxy, {"Authorization": f"Bearer {metered['key']}"})
    resp = await client.embed(model="bge-m3", input=["hello world", "again"])
    await client.embeddings(model="bge-m3", prompt="one more time")
    await wait_until(lambda: proxy.core.usage.recorded == 3)
    legacy, embed = (r for r in await rows(admin, key_name="metered"))
    assert (embed["route"], embed["model"]) == ("/api/embed", "bge-m3")
    assert embed["prompt_tokens"] == resp.prompt_eval_count > 0
    assert legacy["prompt_tokens"] == reference_tokens("one more time")
    used = embed["prompt_tokens"] + legacy["prompt_tokens"]
    assert proxy.core.limiter.tokens_today(identity_of(metered["key"])) == used >= 5
    with pytest.raises(ollama.ResponseError) as info:
        await client.embed(model="bge-m3", input="over the quota")
    assert info.value.status_code == 429


async def test_usage_settings_apply_without_a_restart(proxy_factory):
    """usage.enabled and the retention days are live settings, yet a server
    started with recording off never opened its store (turning it on did
    nothing: the request log stayed a 404), and retention was read once."""
    proxy = await proxy_factory({"usage": {"enabled": False}})
    client = openai_client(proxy)
    async with aiohttp.ClientSession() as http:
        admin = await admin_for(proxy, http)
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "off"}])
        assert await rows(admin) == []
        await admin.ok("POST", "/admin/config/import", json={"usage": {"enabled": True}})
        await client.chat.completions.create(model="deepseek-chat",
                                             messages=[{"role": "user", "content": "on"}])
        [recorded] = await rows(admin)
        assert recorded["status"] == 200 and recorded["key_name"] == "key"
        old = dict(recorded, time=recorded["time"] - 3 * 86400, request_id="req_old",
                   request_body="")
        proxy.core.usage.store.record({k: v for k, v in old.items() if k != "id"})
        assert len(await rows(admin)) == 2
        await admin.ok("POST", "/admin/config/import",
                       json={"usage": {"enabled": True, "retention_raw_days": 1}})

        async def pruned() -> bool:
            return [r["request_id"] for r in await rows(admin)] == [recorded["request_id"]]

        await within(10, pruned)
