"""Claude routes answer every bad request in the Anthropic error shape, with the
right status; count_tokens and the model list on the wire."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from ds2proxy.testing import Delivery, HttpFault, Scripted

HELLO = {"model": "claude-sonnet-5-5", "max_tokens": 100,
         "messages": [{"role": "user", "content": "hi"}]}
PREFIXES = ["/anthropic/v1", "/v1", ""]


async def send(proxy, method: str, path: str, *, body: bytes | dict | None = None,
               headers: dict | None = None) -> tuple[int, dict, dict]:
    headers = {"x-api-key": proxy.key, **(headers or {})}
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body else None
    async with aiohttp.ClientSession() as session:
        async with session.request(method, proxy.url + path, data=data, headers=headers) as resp:
            return resp.status, json.loads(await resp.read()), dict(resp.headers)


def assert_error(body: dict, kind: str) -> str:
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_invalid_json_is_400(proxy, prefix):
    status, body, _ = await send(proxy, "POST", f"{prefix}/messages?beta=true", body=b"{nope")
    assert status == 400
    assert "JSON" in assert_error(body, "invalid_request_error")


@pytest.mark.parametrize("field", ["messages", "model"])
async def test_missing_required_field_is_400(proxy, field):
    request = {k: v for k, v in HELLO.items() if k != field}
    status, body, _ = await send(proxy, "POST", "/v1/messages", body=request)
    assert status == 400
    assert field in assert_error(body, "invalid_request_error")


@pytest.mark.parametrize("path", ["/anthropic/v1/messages", "/v1/messages",
                                  "/v1/messages/count_tokens"])
async def test_unknown_model_is_anthropics_404(proxy, path):
    """Anthropic answers a model it does not serve with 404 not_found_error
    (the SDK's NotFoundError; Claude Code then points at /model): it was a 400."""
    status, body, _ = await send(proxy, "POST", path, body=dict(HELLO, model="claude-2.1"))
    assert status == 404
    assert "claude-2.1" in assert_error(body, "not_found_error")
    assert body["error"]["param"] == "model"
    assert not proxy.fake.calls_to("chat/completion")


async def test_an_undeclared_forced_tool_is_echoed_briefly(proxy):
    request = dict(HELLO, tools=[{"name": "a", "input_schema": {"type": "object"}}],
                   tool_choice={"type": "tool", "name": "N" * 3_000_000})
    status, body, _ = await send(proxy, "POST", "/v1/messages", body=request)
    assert status == 400
    assert len(assert_error(body, "invalid_request_error")) < 300
    assert body["error"]["param"] == "tool_choice"


async def test_missing_key_is_401(proxy):
    status, body, _ = await send(proxy, "POST", "/v1/messages", body=HELLO,
                                 headers={"x-api-key": ""})
    assert status == 401
    assert_error(body, "authentication_error")


async def test_unknown_key_is_401_without_pass_through(proxy_factory):
    proxy = await proxy_factory({"auth": {"allow_passthrough": False}})
    for headers in ({"x-api-key": "sk-wrong"},
                    {"x-api-key": "", "Authorization": "Bearer sk-wrong"}):
        status, body, _ = await send(proxy, "POST", "/messages", body=HELLO, headers=headers)
        assert status == 401
        assert_error(body, "authentication_error")


async def test_body_over_the_limit_is_413(proxy_factory):
    proxy = await proxy_factory({"runtime": {"max_body_bytes": 4096}})
    big = dict(HELLO, messages=[{"role": "user", "content": "x" * 8192}])
    status, body, _ = await send(proxy, "POST", "/v1/messages", body=big)
    assert status == 413
    assert_error(body, "request_too_large")


async def test_full_pool_is_429_with_retry_after(proxy_factory):
    proxy = await proxy_factory({"runtime": {"global_max_inflight": 1, "account_max_queue": 0}})
    proxy.fake.enqueue(Scripted(answer="slow answer", chunk_size=1,
                                delivery=Delivery(chunk_delay=0.05)))
    async with aiohttp.ClientSession() as session:
        async with session.post(proxy.url + "/v1/messages", json=dict(HELLO, stream=True),
                                headers={"x-api-key": proxy.key}) as held:
            assert (await held.content.readline()).startswith(b"event: message_start")
            status, body, headers = await send(proxy, "POST", "/v1/messages", body=HELLO)
            assert status == 429
            assert_error(body, "rate_limit_error")
            assert int(headers["Retry-After"]) >= 1
            assert b"message_stop" in await held.read()


async def test_required_tool_choice_without_a_call_is_422(proxy):
    proxy.fake.enqueue(Scripted(answer="No tools today."))
    request = dict(HELLO, tools=[{"name": "Bash", "input_schema": {"type": "object"}}],
                   tool_choice={"type": "any"})
    status, body, _ = await send(proxy, "POST", "/v1/messages", body=request)
    assert status == 422
    assert_error(body, "invalid_request_error")
    assert body["error"]["code"] == "tool_choice_violation"


async def test_upstream_failure_before_output_is_a_plain_http_error(proxy):
    proxy.fake.enqueue(*[HttpFault(500)] * 4)
    status, body, _ = await send(proxy, "POST", "/v1/messages", body=dict(HELLO, stream=True))
    assert status >= 500
    assert body["type"] == "error" and body["error"]["message"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_count_tokens_on_every_prefix(proxy, prefix):
    path = f"{prefix}/messages/count_tokens?beta=true"
    status, small, _ = await send(proxy, "POST", path, body={
        "model": "claude-opus-5-5", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and set(small) == {"input_tokens"}
    status, large, _ = await send(proxy, "POST", path, body={
        "model": "claude-opus-5-5", "system": "Be careful. " * 50,
        "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and large["input_tokens"] > small["input_tokens"] > 0
    assert not proxy.fake.calls_to("chat/completion")


async def test_count_tokens_needs_a_key_and_a_known_model(proxy):
    request = {"model": "claude-opus-5-5", "messages": [{"role": "user", "content": "hi"}]}
    status, body, _ = await send(proxy, "POST", "/v1/messages/count_tokens", body=request,
                                 headers={"x-api-key": ""})
    assert status == 401
    assert_error(body, "authentication_error")
    status, body, _ = await send(proxy, "POST", "/v1/messages/count_tokens",
                                 body=dict(request, model="nonsense"))
    assert status == 404
    assert_error(body, "not_found_error")


async def test_model_list_shape_and_paging(proxy):
    status, full, _ = await send(proxy, "GET", "/anthropic/v1/models?limit=1000", headers={})
    assert status == 200 and full["has_more"] is False
    ids = [m["id"] for m in full["data"]]
    assert (full["first_id"], full["last_id"]) == (ids[0], ids[-1])
    assert ids[:3] == ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"]
    for model in full["data"]:
        assert set(model) == {"type", "id", "display_name", "created_at"}
        assert model["type"] == "model" and model["created_at"].endswith("Z")
    status, page, _ = await send(proxy, "GET", f"/anthropic/v1/models?limit=2&after_id={ids[1]}")
    assert [m["id"] for m in page["data"]] == ids[2:4] and page["has_more"] is True
    status, page, _ = await send(proxy, "GET", f"/anthropic/v1/models?before_id={ids[2]}")
    assert [m["id"] for m in page["data"]] == ids[:2] and page["has_more"] is False
    status, body, _ = await send(proxy, "GET", "/anthropic/v1/models?limit=0")
    assert status == 400
    assert_error(body, "invalid_request_error")


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A1%D9%A2", "-1", "1.5"])
async def test_a_limit_that_is_not_ascii_digits_is_a_400(proxy, limit):
    """limit=² passed str.isdigit() and broke int(): a 500 from a query string."""
    status, body, _ = await send(proxy, "GET", f"/anthropic/v1/models?limit={limit}")
    assert status == 400
    assert_error(body, "invalid_request_error")


async def test_unknown_model_id_is_404(proxy):
    status, body, _ = await send(proxy, "GET", "/anthropic/v1/models/gpt-3.5-turbo")
    assert status == 404
    assert_error(body, "not_found_error")


async def test_concurrent_streams_do_not_mix(proxy):
    answers = [f"answer number {n}" for n in range(4)]
    proxy.fake.enqueue(*[Scripted(answer=a) for a in answers])
    results = await asyncio.gather(*[send_plain(proxy) for _ in answers])
    assert sorted(results) == sorted(answers)


async def send_plain(proxy) -> str:
    _, body, _ = await send(proxy, "POST", "/v1/messages", body=HELLO)
    return body["content"][0]["text"]
