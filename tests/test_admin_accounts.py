"""Account tests and the self-test against the fake DeepSeek upstream."""

from __future__ import annotations

import asyncio

import orjson
from admin_util import Admin, admin, wait_until  # noqa: F401  (fixture)

from ds2proxy.admin import probes
from ds2proxy.scheduler import AccountState


async def test_testing_one_account_logs_in_and_opens_a_session(admin: Admin):
    fake = admin.proxy.fake
    result = await admin.ok("POST", "/admin/accounts/test",
                            json={"identifier": "alice@example.com"})
    assert result["account"] == "alice@example.com" and result["success"] is True
    assert result["model"] == "deepseek-chat"
    assert isinstance(result["response_time"], int) and result["response_time"] >= 0
    assert [c.account for c in fake.calls_to("users/login")] == ["alice@example.com"]
    assert [c.account for c in fake.calls_to("chat_session/create")] == ["alice@example.com"]
    assert admin.proxy.core.pool.find("alice@example.com").token


async def test_a_failing_account_is_reported_not_raised(admin: Admin):
    await admin.ok("POST", "/admin/accounts", json={"email": "eve@example.com",
                                                    "password": "wrong-password"})
    result = await admin.ok("POST", "/admin/accounts/test", json={"identifier": "eve@example.com"})
    assert result["success"] is False and "eve@example.com" in result["message"]
    assert "wrong-password" not in result["message"]
    page = await admin.ok("GET", "/admin/accounts?q=eve")
    assert page["items"][0]["last_error"]


async def test_testing_with_a_message_runs_a_real_turn(admin: Admin):
    result = await admin.ok("POST", "/admin/accounts/test",
                            json={"identifier": "bob@example.com", "message": "ping-42"})
    assert result["success"] is True and "ping-42" in result["message"]
    assert [c.account for c in admin.proxy.fake.calls_to("chat/completion")] == [
        "bob@example.com"]
    assert admin.proxy.core.pool.inflight == 0


async def test_account_test_request_errors(admin: Admin):
    missing = await admin.call("POST", "/admin/accounts/test", json={})
    assert missing.status == 400 and missing.json()["field"] == "identifier"
    unknown = await admin.call("POST", "/admin/accounts/test", json={"identifier": "x@y.z"})
    assert unknown.status == 404
    model = await admin.call("POST", "/admin/accounts/test",
                             json={"identifier": "bob@example.com", "model": "no-such-model"})
    assert model.status == 400


async def test_test_all_reports_every_account(admin: Admin):
    await admin.ok("POST", "/admin/accounts", json={"email": "eve@example.com",
                                                    "password": "wrong-password"})
    summary = await admin.ok("POST", "/admin/accounts/test-all")
    assert (summary["total"], summary["success"], summary["failed"]) == (3, 2, 1)
    assert [r["account"] for r in summary["results"]] == [
        "alice@example.com", "bob@example.com", "eve@example.com"]
    assert [r["success"] for r in summary["results"]] == [True, True, False]


async def test_test_all_streams_progress_as_ndjson(admin: Admin):
    async with admin.http.post(admin.proxy.url + "/admin/accounts/test-all",
                               json={"stream": True},
                               headers={"Authorization": f"Bearer {admin.token}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [orjson.loads(line) async for line in resp.content if line.strip()]
    assert lines[0] == {"event": "start", "total": 2}
    assert sorted(x["result"]["account"] for x in lines[1:3]) == ["alice@example.com",
                                                                   "bob@example.com"]
    assert lines[-1] == {"event": "done", "total": 2, "success": 2, "failed": 0}


async def test_test_all_fan_out_is_bounded(admin: Admin, monkeypatch):
    for i in range(4):
        await admin.ok("POST", "/admin/accounts", json={"token": f"fan-token-{i}-xxxxxxxx"})
    active = peak = 0
    release = asyncio.Event()

    async def held_session(core, state: AccountState) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1

    monkeypatch.setattr(probes, "_open_session", held_session)
    run = asyncio.create_task(_collect(probes.each_account(admin.proxy.core, fanout=2)))
    await wait_until(lambda: active == 2)
    for _ in range(50):  # give any unbounded task every chance to start
        await asyncio.sleep(0)
    assert active == 2
    release.set()
    results = await run
    assert peak == 2 and len(results) == 6 and all(r["success"] for r in results)


async def _collect(results):
    return [r async for r in results]


async def test_self_test_calls_the_proxys_own_api(admin: Admin):
    result = await admin.ok("POST", "/admin/test", json={"message": "self-check"})
    assert result["success"] is True and result["status_code"] == 200
    assert "self-check" in result["response"]["choices"][0]["message"]["content"]
    assert admin.proxy.key.encode() not in orjson.dumps(result)
    bad_model = await admin.ok("POST", "/admin/test", json={"model": "no-such-model"})
    assert bad_model["success"] is False and bad_model["status_code"] == 400


async def test_self_test_needs_a_key(admin: Admin):
    await admin.ok("DELETE", f"/admin/keys/{admin.proxy.key}")
    reply = await admin.call("POST", "/admin/test")
    assert reply.status == 400 and reply.json()["field"] == "api_key"


async def test_captures_record_real_upstream_exchanges_redacted(admin: Admin):
    await admin.ok("PUT", "/admin/settings", json={"dev_captures": {"enabled": True}})
    body = {"model": "deepseek-chat", "stream": True,
            "messages": [{"role": "user", "content": "capture me"}]}
    async with admin.http.post(admin.proxy.url + "/v1/chat/completions", json=body,
                               headers=admin.proxy.headers()) as resp:
        assert resp.status == 200
        await resp.read()
    reply = await admin.call("GET", "/admin/dev/captures")
    items = reply.json()["items"]
    paths = [i["url"].removeprefix(admin.proxy.fake.base_url) for i in items]
    assert paths[-1] == "/api/v0/users/login" and "/api/v0/chat/completion" in paths
    completion = items[paths.index("/api/v0/chat/completion")]
    assert completion["status"] == 200 and "capture me" in completion["request_body"]
    assert completion["response_body"].startswith("event: ready")
    assert completion["request_headers"]["x-ds-pow-response"] == "[redacted]"
    tokens = [s.token for s in admin.proxy.core.pool.accounts() if s.token]
    assert tokens
    for secret in (*tokens, "pw-alice", "pw-bob"):
        assert secret.encode() not in reply.raw
